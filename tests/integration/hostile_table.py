"""Hostile ModelDeployment specs, as data: one change each to a good manifest, and who must refuse it how.

Each entry sets one field (`path`, dotted with list indexes, on the whole object) to a hostile `value` and says
who refuses it: `server` (the API server, at admission), `operator` (the API server stores it; the operator's
`parse_spec`/`semantic_problems` mark it Invalid) or `json` (no JSON client can even send it: NaN and
infinities; only objects written by other means could reach the operator, which refuses them too).
`field` is the field the refusal names and `fix` words of the fix; `op_field`/`op_fix` when the operator
words it differently. Every entry is also refused by the operator (objects stored before today's CRD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

NS = 'namespace="{{namespace}}"'
QUERY = 'avg(model_confidence{namespace="{{namespace}}",revision="{{revision}}"})'
STEPS = "spec.rollout.canary.steps"
SAMPLE = "spec.validation.samples[0]"
INPUT = f"{SAMPLE}.inputs[0]"


def good() -> dict[str, Any]:
    """A manifest that uses every part of the API, so that every field has a target."""
    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "hostile"},
        "spec": {
            "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://models/triton"},
            "serving": {
                "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
                "replicas": 2,
                "resources": {"gpus": 1, "cpu": "4", "memory": "16Gi"},
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                "args": ["--log-verbose=0"],
            },
            "traffic": {
                "gatewayAPI": {
                    "parentRefs": [{"name": "inference-gw", "namespace": "gateways"}],
                    "hostnames": ["fraud.example.com"],
                }
            },
            "rollout": {
                "shadow": {"mirrorPercent": 50, "duration": "10m", "compare": {
                    "samplePercent": 50, "outputs": [{"name": "score", "mode": "Values", "absolute": 0.01}]}},
                "canary": {
                    "steps": [{"weight": 5, "duration": "5m"}, {"approval": {}}, {"weight": 50, "duration": "10m"}]
                },
                "analysis": {"interval": "1m", "failureLimit": 2, "minRequests": 100},
                "progressDeadline": "15m",
                "scaleDownDelay": "30s",
            },
            "slo": {
                "errorRate": {"max": 0.01},
                "latencyP99Ms": {"max": 250, "maxRatioToStable": 1.2},
                "outputShift": {"max": 0.2, "enforce": False},
                "custom": [{"name": "mean-confidence", "query": QUERY, "min": 0.7}],
            },
            "validation": {
                "samples": [
                    {
                        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}],
                        "expect": {"outputs": [{"name": "score", "datatype": "FP32", "shape": [1, 1]}]},
                    }
                ]
            },
        },
    }


@dataclass(frozen=True)
class Hostile:
    id: str
    path: str
    value: Any
    field: str
    fix: str
    by: str = "server"
    op_field: str | None = None
    op_fix: str | None = None


def steps(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return list(items)


def tensor(**changes: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4], **changes}


def env(count: int, size: int) -> list[dict[str, str]]:
    return [{"name": f"V{i}", "value": "x" * size} for i in range(count)]


GW = {"parentRefs": [{"name": "gw"}]}
PATTERN = "should match"  # the API server's words for a pattern mismatch
OP_PATTERN = "does not match the pattern"

TABLE: list[Hostile] = [
    # --- names: child objects are <name>-<hash>, <name>-canary, label values ---------------------------------
    Hostile("name-53-chars", "metadata.name", "a" * 53, "metadata.name", "at most 52"),
    Hostile("name-253-chars", "metadata.name", "a" * 253, "metadata.name", "at most 52"),
    Hostile("name-dot", "metadata.name", "fraud.scorer", "metadata.name", "only lowercase letters"),
    Hostile("name-leading-digit", "metadata.name", "7fraud", "metadata.name", "start with a letter"),
    Hostile("name-uppercase", "metadata.name", "Fraud", "metadata.name", "lower case", op_fix="lowercase"),
    Hostile("name-trailing-dash", "metadata.name", "fraud-", "metadata.name", "end with", op_fix="end with"),
    Hostile("name-unicode", "metadata.name", "fraudé", "metadata.name", "lower case", op_fix="lowercase"),
    Hostile("name-underscore", "metadata.name", "fraud_scorer", "metadata.name", "lower case", op_fix="lowercase"),
    # --- durations ---------------------------------------------------------------------------------------------
    Hostile("deadline-overflow", "spec.rollout.progressDeadline", "99999999999h", "spec.rollout.progressDeadline",
            "at most 720h (30 days)"),
    Hostile("deadline-721h", "spec.rollout.progressDeadline", "721h", "spec.rollout.progressDeadline",
            "at most 720h (30 days)"),
    Hostile("step-duration-overflow", f"{STEPS}[0].duration", "99999999999h", f"{STEPS}[0].duration",
            "at most 720h (30 days)"),
    Hostile("shadow-duration-overflow", "spec.rollout.shadow.duration", "9999999999999m",
            "spec.rollout.shadow.duration", "at most 720h (30 days)"),
    Hostile("scale-down-delay-overflow", "spec.rollout.scaleDownDelay", "99999999999h", "spec.rollout.scaleDownDelay",
            "at most 720h (30 days)"),
    Hostile("interval-2h", "spec.rollout.analysis.interval", "2h", "spec.rollout.analysis.interval", "at most 1h"),
    Hostile("interval-overflow", "spec.rollout.analysis.interval", "99999999999h", "spec.rollout.analysis.interval",
            "at most 1h"),
    Hostile("duration-400-digits", "spec.rollout.progressDeadline", "9" * 400 + "s", "spec.rollout.progressDeadline",
            "16"),
    Hostile("duration-negative", "spec.rollout.progressDeadline", "-5m", "spec.rollout.progressDeadline", PATTERN,
            op_fix="not a duration"),
    Hostile("duration-zero", f"{STEPS}[0].duration", "0s", f"{STEPS}[0].duration", "longer than zero"),
    Hostile("duration-fullwidth-digit", "spec.rollout.scaleDownDelay", "\uff15m", "spec.rollout.scaleDownDelay",
            PATTERN, op_fix="not a duration"),
    Hostile("duration-space", "spec.rollout.scaleDownDelay", "5 m", "spec.rollout.scaleDownDelay", PATTERN,
            op_fix="not a duration"),
    Hostile("duration-empty", "spec.rollout.scaleDownDelay", "", "spec.rollout.scaleDownDelay", PATTERN,
            op_fix="not a duration"),
    Hostile("duration-number", "spec.rollout.scaleDownDelay", 300, "spec.rollout.scaleDownDelay", "string"),
    Hostile("deadline-below-checks", "spec.rollout.progressDeadline", "1m", "spec.rollout.progressDeadline",
            "at least analysis.interval x analysis.failureLimit", op_fix="make it at least 2m"),
    Hostile("step-shorter-than-interval", f"{STEPS}[0].duration", "30s", STEPS,
            "at least analysis.interval", op_field=f"{STEPS}[0].duration", op_fix="make it at least 1m"),
    # --- sizes -------------------------------------------------------------------------------------------------
    Hostile("env-value-4097", "spec.serving.env", env(1, 4097), "spec.serving.env[0].value", "4096"),
    Hostile("env-text-total", "spec.serving.env", env(3, 2000), "spec.serving.env", "at most 4096"),
    Hostile("env-value-1MiB", "spec.serving.env", env(1, 1 << 20), "spec.serving.env[0].value", "4096"),
    Hostile("args-33", "spec.serving.args", ["--x"] * 33, "spec.serving.args", "32"),
    Hostile("arg-257-chars", "spec.serving.args", ["x" * 257], "spec.serving.args[0]", "256"),
    Hostile("query-1025-chars", "spec.slo.custom[0].query", QUERY + " " * 1025, "spec.slo.custom[0].query", "1024"),
    Hostile("custom-slos-17", "spec.slo.custom", [{"name": f"c{i}", "query": QUERY, "min": 0} for i in range(17)],
            "spec.slo.custom", "16"),
    Hostile("steps-21", STEPS, [{"weight": i + 1, "duration": "5m"} for i in range(21)], STEPS, "20"),
    Hostile("samples-9", "spec.validation.samples", [{"inputs": [tensor()]}] * 9, "spec.validation.samples", "8"),
    Hostile("sample-values-total", "spec.validation.samples",
            [{"inputs": [tensor(shape=[1, 600], data=[0.5] * 600)]}] * 2, "spec.validation.samples", "at most 1024",
            by="operator"),  # CEL cannot see tensor values (untyped): the operator counts them
    Hostile("tensor-values-1025", f"{INPUT}", tensor(shape=[1025], data=[0.5] * 1025), f"{INPUT}.data", "1024"),
    Hostile("tensor-bytes-33-chars", f"{INPUT}", tensor(datatype="BYTES", shape=[1], data=["y" * 33]),
            f"{INPUT}.data", "32"),
    Hostile("node-selector-17", "spec.serving.nodeSelector", {f"k{i}": "v" for i in range(17)},
            "spec.serving.nodeSelector", "16"),
    Hostile("tolerations-17", "spec.serving.tolerations", [{"operator": "Exists"}] * 17, "spec.serving.tolerations",
            "16"),
    Hostile("parent-refs-9", "spec.traffic.gatewayAPI.parentRefs", [{"name": "gw"}] * 9,
            "spec.traffic.gatewayAPI.parentRefs", "8"),
    Hostile("hostnames-17", "spec.traffic.gatewayAPI.hostnames", [f"h{i}.example.com" for i in range(17)],
            "spec.traffic.gatewayAPI.hostnames", "16"),
    Hostile("repository-1025", "spec.model.repository", "s3://" + "r" * 1020, "spec.model.repository", "1024"),
    Hostile("image-1025", "spec.serving.image", "i" * 1025, "spec.serving.image", "1024"),
    Hostile("model-name-129", "spec.model.name", "m" * 129, "spec.model.name", "128"),
    # --- unicode and control characters ------------------------------------------------------------------------
    Hostile("image-unicode", "spec.serving.image", "nvcr.io/tritón:1", "spec.serving.image", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("image-space", "spec.serving.image", "nvcr.io/triton :1", "spec.serving.image", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("image-newline", "spec.serving.image", "nvcr.io/triton\n:1", "spec.serving.image", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("image-ansi-escape", "spec.serving.image", "\x1b[31mtriton", "spec.serving.image", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("repository-unicode", "spec.model.repository", "s3://модели", "spec.model.repository", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("env-name-unicode", "spec.serving.env[0].name", "VÄR", "spec.serving.env[0].name", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("env-name-rtl-override", "spec.serving.env[0].name", "A\u202eB", "spec.serving.env[0].name", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("model-name-cyrillic", "spec.model.name", "модель", "spec.model.name", PATTERN, op_fix=OP_PATTERN),
    Hostile("custom-slo-name-emoji", "spec.slo.custom[0].name", "ok-\U0001f600", "spec.slo.custom[0].name", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("tensor-name-unicode", f"{INPUT}.name", "ввод", f"{INPUT}.name", PATTERN, op_fix=OP_PATTERN),
    Hostile("hostname-unicode", "spec.traffic.gatewayAPI.hostnames[0]", "fräud.example.com",
            "spec.traffic.gatewayAPI.hostnames[0]", PATTERN, op_fix=OP_PATTERN),
    Hostile("version-fullwidth", "spec.model.version", "\uff17", "spec.model.version", PATTERN, op_fix=OP_PATTERN),
    Hostile("toleration-key-unicode", "spec.serving.tolerations[0].key", "gpü", "spec.serving.tolerations[0].key",
            PATTERN, op_fix=OP_PATTERN),
    Hostile("node-selector-key-space", "spec.serving.nodeSelector", {"gpu type": "h100"}, "spec.serving.nodeSelector",
            "label key", op_fix=OP_PATTERN),
    Hostile("node-selector-value-space", "spec.serving.nodeSelector", {"gpu": "h 100"},
            "spec.serving.nodeSelector", PATTERN, op_fix=OP_PATTERN),
    # --- queries -----------------------------------------------------------------------------------------------
    Hostile("query-no-namespace", "spec.slo.custom[0].query", "up", "spec.slo.custom[0].query",
            'namespace="{{namespace}}"'),
    Hostile("query-other-namespace", "spec.slo.custom[0].query", f"up{{{NS}}} + up{{namespace=\"other\"}}",
            "spec.slo.custom[0].query", 'selects namespace "other"', by="operator"),
    Hostile("query-namespace-regex", "spec.slo.custom[0].query", f'up{{namespace=~".+"}} or up{{{NS}}}',
            "spec.slo.custom[0].query", "instead of =", by="operator"),
    Hostile("query-unclosed", "spec.slo.custom[0].query", f"avg(up{{{NS}}}", "spec.slo.custom[0].query",
            "not valid PromQL", by="operator"),
    Hostile("query-unknown-variable", "spec.slo.custom[0].query", f'up{{{NS},x="{{{{secret}}}}"}}',
            "spec.slo.custom[0].query", "unknown template variable", by="operator"),
    Hostile("query-empty", "spec.slo.custom[0].query", "", "spec.slo.custom[0].query", "at least 1"),
    # --- routes ------------------------------------------------------------------------------------------------
    Hostile("two-routers", "spec.traffic", {"gatewayAPI": GW, "istio": {}}, "spec.traffic", "exactly one"),
    Hostile("no-router", "spec.traffic", {}, "spec.traffic", "exactly one"),
    Hostile("none-with-shadow", "spec.traffic", {"none": {}}, "spec.rollout.shadow", "cannot mirror"),
    # --- output comparison -------------------------------------------------------------------------------------
    Hostile("compare-sample-0", "spec.rollout.shadow.compare.samplePercent", 0,
            "spec.rollout.shadow.compare.samplePercent", "greater than 0"),
    Hostile("compare-mode-lowercase", "spec.rollout.shadow.compare.outputs[0].mode", "argmax",
            "spec.rollout.shadow.compare.outputs[0].mode", "Argmax"),
    Hostile("compare-outputs-twice", "spec.rollout.shadow.compare.outputs", [{"name": "score"}, {"name": "score"}],
            "spec.rollout.shadow.compare", "must be unique", op_field="spec.rollout.shadow.compare.outputs[1].name"),
    Hostile("output-slo-compare-off", "spec.rollout.shadow.compare.enabled", False, "spec.slo.outputShift",
            "enabled is false", by="operator"),
    Hostile("enforce-not-boolean", "spec.slo.outputShift", {"max": 0.2, "enforce": "maybe"},
            "spec.slo.outputShift.enforce", "boolean"),
    Hostile("parent-refs-empty", "spec.traffic.gatewayAPI.parentRefs", [], "spec.traffic.gatewayAPI.parentRefs", "1"),
    Hostile("hostname-wildcard-middle", "spec.traffic.gatewayAPI.hostnames[0]", "a.*.example.com",
            "spec.traffic.gatewayAPI.hostnames[0]", PATTERN, op_fix=OP_PATTERN),
    Hostile("hostname-uppercase", "spec.traffic.gatewayAPI.hostnames[0]", "Fraud.example.com",
            "spec.traffic.gatewayAPI.hostnames[0]", PATTERN, op_fix=OP_PATTERN),
    Hostile("hostname-254", "spec.traffic.gatewayAPI.hostnames[0]", "a" * 254, "spec.traffic.gatewayAPI.hostnames[0]",
            "253"),
    Hostile("hostname-with-port", "spec.traffic.gatewayAPI.hostnames[0]", "fraud.example.com:80",
            "spec.traffic.gatewayAPI.hostnames[0]", PATTERN, op_fix=OP_PATTERN),
    Hostile("parent-ref-name-empty", "spec.traffic.gatewayAPI.parentRefs[0].name", "",
            "spec.traffic.gatewayAPI.parentRefs[0].name", "at least 1", op_fix="at least 1"),
    Hostile("istio-gateway-empty", "spec.traffic", {"istio": {"gateways": [""]}}, "spec.traffic.istio.gateways[0]",
            "at least 1"),
    # --- numbers -----------------------------------------------------------------------------------------------
    Hostile("replicas-0", "spec.serving.replicas", 0, "spec.serving.replicas", "1"),
    Hostile("replicas-negative", "spec.serving.replicas", -1, "spec.serving.replicas", "1"),
    Hostile("replicas-10e12", "spec.serving.replicas", 10**12, "spec.serving.replicas", "1000"),
    Hostile("replicas-fraction", "spec.serving.replicas", 1.5, "spec.serving.replicas", "integer"),
    Hostile("replicas-string", "spec.serving.replicas", "two", "spec.serving.replicas", "integer"),
    Hostile("weight-0", f"{STEPS}[0].weight", 0, f"{STEPS}[0].weight", "1"),
    Hostile("weight-101", f"{STEPS}[2].weight", 101, f"{STEPS}[2].weight", "100"),
    Hostile("weights-decreasing", STEPS, steps({"weight": 50, "duration": "5m"}, {"weight": 5, "duration": "5m"}),
            STEPS, "strictly increase"),
    Hostile("weights-equal", STEPS, steps({"weight": 5, "duration": "5m"}, {"weight": 5, "duration": "5m"}), STEPS,
            "strictly increase"),
    Hostile("mirror-0", "spec.rollout.shadow.mirrorPercent", 0, "spec.rollout.shadow.mirrorPercent", "1"),
    Hostile("mirror-1000", "spec.rollout.shadow.mirrorPercent", 1000, "spec.rollout.shadow.mirrorPercent", "100"),
    Hostile("error-rate-2", "spec.slo.errorRate.max", 2, "spec.slo.errorRate.max", "1"),
    Hostile("error-rate-negative", "spec.slo.errorRate.max", -0.1, "spec.slo.errorRate.max", "0"),
    Hostile("latency-max-0", "spec.slo.latencyP99Ms.max", 0, "spec.slo.latencyP99Ms.max", "0"),
    Hostile("ratio-negative", "spec.slo.latencyP99Ms.maxRatioToStable", -1, "spec.slo.latencyP99Ms.maxRatioToStable",
            "0"),
    Hostile("custom-min-above-max", "spec.slo.custom[0].max", 0.5, "spec.slo.custom[0]", "min must not exceed max",
            op_fix="exceeds max"),
    Hostile("custom-no-bound", "spec.slo.custom[0]", {"name": "c", "query": QUERY}, "spec.slo.custom[0]",
            "needs min, max or both"),
    Hostile("failure-limit-0", "spec.rollout.analysis.failureLimit", 0, "spec.rollout.analysis.failureLimit", "1"),
    Hostile("failure-limit-1000", "spec.rollout.analysis.failureLimit", 1000, "spec.rollout.analysis.failureLimit",
            "100"),
    Hostile("min-requests-negative", "spec.rollout.analysis.minRequests", -1, "spec.rollout.analysis.minRequests",
            "0"),
    Hostile("min-requests-10e12", "spec.rollout.analysis.minRequests", 10**12, "spec.rollout.analysis.minRequests",
            "1000000000"),
    Hostile("gpus-17", "spec.serving.resources.gpus", 17, "spec.serving.resources.gpus", "16"),
    Hostile("gpus-negative", "spec.serving.resources.gpus", -1, "spec.serving.resources.gpus", "0"),
    Hostile("cpu-35-digits", "spec.serving.resources.cpu", "9" * 35, "spec.serving.resources.cpu", "32"),
    Hostile("cpu-words", "spec.serving.resources.cpu", "4 cores", "spec.serving.resources.cpu", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("memory-gb", "spec.serving.resources.memory", "16GB", "spec.serving.resources.memory", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("toleration-seconds-negative", "spec.serving.tolerations[0]",
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": -5},
            "spec.serving.tolerations[0].tolerationSeconds", "0"),
    Hostile("error-rate-nan", "spec.slo.errorRate.max", math.nan, "spec.slo.errorRate.max", "finite", by="json"),
    Hostile("custom-min-infinity", "spec.slo.custom[0].min", -math.inf, "spec.slo.custom[0].min", "finite",
            by="json"),
    Hostile("latency-infinity", "spec.slo.latencyP99Ms.max", math.inf, "spec.slo.latencyP99Ms.max", "finite",
            by="json"),
    Hostile("tolerance-nan", f"{SAMPLE}.expect.outputs[0].tolerance", math.nan,
            f"{SAMPLE}.expect.outputs[0].tolerance", "finite", by="json"),
    # --- steps -------------------------------------------------------------------------------------------------
    Hostile("steps-empty", STEPS, [], STEPS, "1"),
    Hostile("step-weight-and-approval", f"{STEPS}[0]", {"weight": 5, "duration": "5m", "approval": {}}, f"{STEPS}[0]",
            "exactly one"),
    Hostile("step-empty", f"{STEPS}[0]", {}, f"{STEPS}[0]", "exactly one"),
    Hostile("step-weight-without-duration", f"{STEPS}[0]", {"weight": 5}, f"{STEPS}[0]", "needs a duration"),
    Hostile("step-approval-with-duration", f"{STEPS}[1]", {"approval": {}, "duration": "5m"}, f"{STEPS}[1]",
            "takes no duration"),
    Hostile("only-approval-no-shadow", "spec.rollout", {"canary": {"steps": [{"approval": {}}]}}, STEPS,
            "no weight step and no shadow stage", by="operator"),
    # --- samples -----------------------------------------------------------------------------------------------
    Hostile("sample-shape-mismatch", f"{INPUT}.data", [0.1, 0.2, 0.3], f"{INPUT}.data", "give exactly 4",
            by="operator"),
    Hostile("sample-datatype-float32", f"{INPUT}.datatype", "FLOAT32", f"{INPUT}.datatype", "FP32"),
    Hostile("sample-bool-in-fp32", f"{INPUT}.data", [True, False, True, False], f"{INPUT}.data",
            "must be numbers", by="operator"),
    Hostile("sample-negative-dimension", f"{INPUT}.shape", [-1, 4], f"{INPUT}.shape[0]", "0"),
    Hostile("sample-no-inputs", f"{SAMPLE}.inputs", [], f"{SAMPLE}.inputs", "1"),
    Hostile("sample-input-twice", f"{SAMPLE}.inputs", [tensor(), tensor()], f"{SAMPLE}.inputs[1].name",
            "given twice", by="operator"),
    Hostile("sample-int-fraction", f"{INPUT}", tensor(datatype="INT32", data=[1, 2, 3, 0.5]), f"{INPUT}.data",
            "whole numbers", by="operator"),
    Hostile("sample-object-value", f"{INPUT}", tensor(shape=[1], data=[{"a": 1}]), f"{INPUT}.data",
            "must be", by="operator"),
    Hostile("expected-negative-shape", f"{SAMPLE}.expect.outputs[0].shape", [1, -1],
            f"{SAMPLE}.expect.outputs[0].shape", "negative dimensions", by="operator"),
    # --- tolerations -------------------------------------------------------------------------------------------
    Hostile("toleration-exists-with-value", "spec.serving.tolerations[0]", {"key": "k", "operator": "Exists",
            "value": "v"}, "spec.serving.tolerations[0]", "takes no value"),
    Hostile("toleration-equal-without-key", "spec.serving.tolerations[0]", {"operator": "Equal", "value": "v"},
            "spec.serving.tolerations[0]", "needs operator Exists"),
    Hostile("toleration-effect-sometimes", "spec.serving.tolerations[0].effect", "Sometimes",
            "spec.serving.tolerations[0].effect", "NoSchedule"),
    Hostile("toleration-operator-in", "spec.serving.tolerations[0].operator", "In",
            "spec.serving.tolerations[0].operator", "Exists"),
    Hostile("toleration-seconds-without-noexecute", "spec.serving.tolerations[0].tolerationSeconds", 30,
            "spec.serving.tolerations[0].tolerationSeconds", "only a NoExecute toleration", by="operator"),
    # --- env, args, images, selectors --------------------------------------------------------------------------
    Hostile("env-name-empty", "spec.serving.env[0].name", "", "spec.serving.env[0].name", "at least 1",
            op_fix="at least 1"),
    Hostile("env-name-with-equals", "spec.serving.env[0].name", "A=B", "spec.serving.env[0].name", PATTERN,
            op_fix=OP_PATTERN),
    Hostile("env-set-twice", "spec.serving.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
            "spec.serving.env[1].name", "set twice", by="operator"),
    Hostile("arg-overrides-repository", "spec.serving.args", ["--model-repository=/elsewhere"], "spec.serving.args[0]",
            "set by Modelship", by="operator"),
    Hostile("image-empty", "spec.serving.image", "", "spec.serving.image", "at least 1", op_fix="at least 1"),
    Hostile("node-selector-value-64", "spec.serving.nodeSelector", {"gpu": "v" * 64}, "spec.serving.nodeSelector",
            "63"),
    Hostile("node-selector-bad-prefix", "spec.serving.nodeSelector", {"Foo.com/x": "v"}, "spec.serving.nodeSelector",
            "label key", op_fix=OP_PATTERN),
    Hostile("node-selector-number", "spec.serving.nodeSelector", {"gpu": 5}, "spec.serving.nodeSelector",
            "string"),
    # --- types and unknown fields ------------------------------------------------------------------------------
    Hostile("unknown-field", "spec.rollout.canary.stepz", [], "stepz", "unknown field", op_fix="did you mean steps"),
    Hostile("spec-a-string", "spec", "x", "spec", "object"),
    Hostile("version-unquoted", "spec.model.version", 7, "spec.model.version", "string", op_fix="quote it in YAML"),
    Hostile("version-zero", "spec.model.version", "0", "spec.model.version", PATTERN, op_fix=OP_PATTERN),
    Hostile("version-20-digits", "spec.model.version", "1" * 20, "spec.model.version", "19"),
]
