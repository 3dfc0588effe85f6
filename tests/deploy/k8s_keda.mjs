// Validates KEDA custom resources (a JSON array, from k8s_manifests.py split) with
// @kubernetes-models/keda: JSON-schema validators generated from KEDA's API types.
// Usage: node k8s_keda.mjs NODE_MODULES KEDA.json
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, file] = process.argv.slice(2);
if (!nodeModules || !file) {
  console.error("usage: node k8s_keda.mjs NODE_MODULES KEDA.json");
  process.exit(2);
}
const pkg = join(nodeModules, "@kubernetes-models", "keda");
const version = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version;
console.log(`KEDA schema: @kubernetes-models/keda ${version}`);
const load = async (kind) =>
  (await import(pathToFileURL(join(pkg, "keda.sh", "v1alpha1", `${kind}.js`)).href))[kind];

let failed = 0;
for (const doc of JSON.parse(readFileSync(file, "utf8"))) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  let Model;
  try {
    Model = doc.apiVersion === "keda.sh/v1alpha1" ? await load(doc.kind) : undefined;
  } catch {
    Model = undefined;
  }
  if (!Model) {
    console.log(`ERROR ${name}: no KEDA schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`ERROR ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
