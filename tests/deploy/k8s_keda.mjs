// Validates KEDA custom resources (a JSON array, from k8s_manifests.py split) with
// @kubernetes-models/keda: JSON-schema validators generated from KEDA's API types.
// Then runs each ScaledObject's `advanced.scalingModifiers.formula` as KEDA would (the HPA sees
// only its value: replicas = ceil(value / target) with AverageValue; active when value >
// activationTarget) on three situations:
//   - the same backlog, one `target` worth, in every queue trigger: replicas = their number
//     (the sum; separate triggers would have given 1);
//   - no backlog, the cron trigger outside its window (0, or 1 before KEDA 2.18): inactive;
//   - no backlog, the cron trigger inside (its desiredReplicas): active, at least one replica
//     and at most desiredReplicas.
// The formula is evaluated as JavaScript, which reads the renderer's subset of expr (+ - * /,
// comparisons, ?:, max, min) the same way; anything else is refused, not evaluated.
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

const QUEUES = new Set(["redis-streams", "nats-jetstream"]);
const SAFE = /^[A-Za-z0-9_ .+\-*\/()<>=!?:,]*$/;

// Problems of a ScaledObject's formula in the situations above (an empty list when none).
function formulaProblems(doc) {
  const spec = doc.spec ?? {};
  const m = spec.advanced?.scalingModifiers;
  if (!m?.formula) return [];
  if (!SAFE.test(m.formula)) return [`formula ${JSON.stringify(m.formula)} is outside the checked subset`];
  const triggers = spec.triggers ?? [];
  const names = triggers.map((t) => t.name);
  const f = new Function(...names, `"use strict"; const max = Math.max, min = Math.min; return (${m.formula});`);
  const target = Number(m.target);
  const activation = Number(m.activationTarget ?? "0");
  const value = (of) => Number(f(...triggers.map(of)));
  const replicas = (v) => Math.min(Math.max(Math.ceil(v / target), spec.minReplicaCount ?? 0), spec.maxReplicaCount ?? 100);
  const problems = [];
  const queues = triggers.filter((t) => QUEUES.has(t.type));
  const crons = triggers.filter((t) => t.type === "cron");
  for (const outside of [0, 1]) {
    const quiet = (t) => (t.type === "cron" ? outside : 0);
    if (value(quiet) > activation) {
      problems.push(`no backlog, cron ${outside} outside its window: value ${value(quiet)} keeps it active`);
    }
  }
  if (queues.length > 0) {
    const spread = (t) => (QUEUES.has(t.type) ? target : 0);
    const want = Math.min(queues.length, spec.maxReplicaCount ?? 100);
    const got = replicas(value(spread));
    if (got < want) {
      problems.push(`${target} runs in each of ${queues.length} queues gives ${got} replicas, not ${want}: the queues are not added`);
    }
  }
  for (const cron of crons) {
    const desired = Number(cron.metadata?.desiredReplicas);
    const inside = (t) => (t === cron ? desired : 0);
    const v = value(inside);
    const r = replicas(v);
    if (!(v > activation) || r < 1 || r > desired) {
      problems.push(`in ${cron.name}'s window with no backlog: value ${v}, ${r} replicas (want 1 to ${desired})`);
    }
  }
  return problems;
}

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
    const problems = doc.kind === "ScaledObject" ? formulaProblems(doc) : [];
    if (problems.length) {
      console.log(`ERROR ${name}: ${problems.join("; ")}`);
      failed++;
      continue;
    }
    const checked = doc.spec?.advanced?.scalingModifiers?.formula
      ? (doc.spec.triggers ?? []).some((t) => t.type === "cron")
        ? " (formula: queues added, idle off hours, business-hours floor held)"
        : " (formula: queues added, idle when empty)"
      : "";
    console.log(`ok ${name}${checked}`);
  } catch (err) {
    console.log(`ERROR ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
