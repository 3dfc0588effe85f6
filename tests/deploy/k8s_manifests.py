"""Helpers of check_k8s.sh (run with $DEPLOY_VENV's python).

  split BUILT.yaml BUILTIN.yaml KEDA.json RULES.yaml
      Splits kustomize's output: built-in kinds (for kubernetes-validate) and KEDA's custom
      resources (JSON, for the KEDA checks), and writes the PromQL of KEDA's prometheus
      triggers as a Prometheus rule file (for `promtool check rules`).

  keda KEDA.json
      Validates KEDA's custom resources with cloudcoil-models-keda: pydantic models generated
      from KEDA's CRDs. Pydantic ignores unknown fields, so a resource is also dumped back and
      compared with the input: a field the CRD does not know (a typo such as `cooldownPeriods`)
      is an error, as `kubectl apply --validate=strict` would make it. Then what the schema
      cannot say, as KEDA's admission webhook and scale handler read it:
        - several queue triggers (one per priority stream) need `advanced.scalingModifiers`:
          without it the HPA takes the largest of their metrics, not their sum;
        - with scalingModifiers (`formula`, `target` > 0, a metricType other than Utilization)
          every trigger is named with an expr identifier (`-` would read as a minus), every
          name the formula uses is a trigger, and every trigger is in the formula: KEDA gives
          the HPA only the formula's result, so a trigger left out has no effect at all.
"""

import json
import re
import sys

import yaml


def split(built, builtin_out, keda_out, rules_out):
    with open(built) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    builtin = [d for d in docs if not d.get("apiVersion", "").startswith("keda.sh/")]
    keda = [d for d in docs if d.get("apiVersion", "").startswith("keda.sh/")]
    with open(builtin_out, "w") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)
    with open(keda_out, "w") as f:
        json.dump(keda, f)
    rules = []
    for doc in keda:
        for i, trigger in enumerate(doc.get("spec", {}).get("triggers", [])):
            if trigger.get("type") == "prometheus":
                rules.append({
                    "record": "keda_check:%s:%d" % (doc["metadata"]["name"].replace("-", "_"), i),
                    "expr": trigger["metadata"]["query"],
                })
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "keda-triggers", "rules": rules}]}, f)
    kinds = sorted({"%s/%s" % (d["kind"], d["metadata"]["name"]) for d in keda})
    print("%d built-in resources, %d KEDA resources%s" % (
        len(builtin), len(keda), (": " + ", ".join(kinds)) if kinds else ""))


def unknown_fields(given, dumped, path=""):
    """Paths in `given` that the model dropped (unknown to the CRD schema)."""
    out = []
    if isinstance(given, dict):
        for key, value in given.items():
            here = "%s.%s" % (path, key) if path else key
            if not isinstance(dumped, dict) or key not in dumped:
                out.append(here)
            else:
                out.extend(unknown_fields(value, dumped[key], here))
    elif isinstance(given, list):
        for i, value in enumerate(given):
            other = dumped[i] if isinstance(dumped, list) and i < len(dumped) else None
            out.extend(unknown_fields(value, other, "%s[%d]" % (path, i)))
    return out


QUEUE_TRIGGERS = {"redis-streams", "nats-jetstream"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# expr's functions and keywords a formula may use besides trigger names.
EXPR_WORDS = {"max", "min", "abs", "ceil", "floor", "float", "int", "round", "and", "or", "not"}


def scaling_problems(doc):
    """What KEDA would do differently from the intent (see the module's doc)."""
    spec = doc.get("spec", {})
    triggers = spec.get("triggers", [])
    modifiers = (spec.get("advanced") or {}).get("scalingModifiers") or {}
    problems = []
    queues = [t for t in triggers if t.get("type") in QUEUE_TRIGGERS]
    if len(queues) > 1 and not modifiers.get("formula"):
        problems.append("%d queue triggers without advanced.scalingModifiers: the HPA takes their maximum, "
                        "not their sum" % len(queues))
    if not modifiers:
        return problems
    formula = modifiers.get("formula", "")
    if not formula:
        problems.append("scalingModifiers without a formula")
    try:
        if float(modifiers.get("target", "")) <= 0:
            raise ValueError
    except ValueError:
        problems.append("scalingModifiers.target %r is not a positive number" % modifiers.get("target"))
    if modifiers.get("metricType", "AverageValue") not in ("AverageValue", "Value"):
        problems.append("scalingModifiers.metricType %r (AverageValue or Value)" % modifiers.get("metricType"))
    names = [t.get("name", "") for t in triggers]
    used = set(re.findall(r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_]*", formula)) - EXPR_WORDS
    for name in names:
        if not IDENTIFIER.match(name):
            problems.append("trigger name %r is not an expr identifier" % name)
        elif name not in used:
            problems.append("trigger %s is not in the formula, so it has no effect" % name)
    for name in sorted(used - set(names)):
        problems.append("the formula uses %s, which no trigger is named" % name)
    return problems


def keda(path):
    from importlib.metadata import version

    import pydantic
    from cloudcoil.models.keda import v1alpha1

    with open(path) as f:
        docs = json.load(f)
    print("KEDA schema: cloudcoil-models-keda %s (pydantic models of KEDA's CRDs)" % version(
        "cloudcoil.models.keda"))
    failed = 0
    for doc in docs:
        name = "%s/%s" % (doc.get("kind"), doc.get("metadata", {}).get("name"))
        model = getattr(v1alpha1, doc.get("kind", ""), None)
        if model is None or doc.get("apiVersion") != "keda.sh/v1alpha1":
            print("ERROR %s: no KEDA schema for %s %s" % (name, doc.get("apiVersion"), doc.get("kind")))
            failed += 1
            continue
        try:
            obj = model.model_validate(doc)
        except pydantic.ValidationError as err:
            print("ERROR %s: %s" % (name, err))
            failed += 1
            continue
        dumped = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
        unknown = unknown_fields(doc, dumped)
        if unknown:
            print("ERROR %s: fields unknown to KEDA's schema: %s" % (name, ", ".join(unknown)))
            failed += 1
            continue
        problems = scaling_problems(doc) if doc.get("kind") == "ScaledObject" else []
        if problems:
            print("ERROR %s: %s" % (name, "; ".join(problems)))
            failed += 1
            continue
        print("ok %s" % name)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "split":
        split(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "keda":
        sys.exit(keda(sys.argv[2]))
    else:
        sys.exit(__doc__)
