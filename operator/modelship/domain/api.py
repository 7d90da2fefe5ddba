"""The ModelDeployment API (modelship.dev/v1alpha1), defined once: the CRD, docs and validation derive from it
(`modelship crds`, `modelship docs`, `modelship.domain.validation`).

Field descriptions become `kubectl explain` text; `x-kubernetes-validations` entries become CEL rules that the
API server enforces, so a bad manifest is refused before it can touch the running model.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from modelship.domain.api_base import ApiModel, cel, cel_rules
from modelship.domain.compare_spec import CompareSpec
from modelship.domain.durations import Duration, cel_duration_ok, duration_field, positive_within
from modelship.domain.notify_spec import MAX_SUBSCRIPTIONS, Subscription
from modelship.domain.notify_spec import NAMES_UNIQUE as NOTIFICATION_NAMES_UNIQUE
from modelship.domain.slo_spec import Slo

GROUP = "modelship.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("mdep",)
API_VERSION = f"{GROUP}/{VERSION}"

MAX_STEPS = 20
MAX_SAMPLES = 8
MAX_SAMPLE_VALUES = 1024
"""Tensor values (inputs and expected outputs) of all samples together, e.g. one [1, 784] input and its output."""
MAX_TENSOR_TEXT = 32
"""Longest BYTES tensor value in a sample, in characters."""
MAX_ENV_VALUE = 4096
MAX_ENV_TEXT = 4096
"""All environment values together, in characters."""
MAX_SPEC_BYTES = 512 * 1024
"""Every list and string is bounded so that the largest spec the API server admits stays under this, as JSON
(tests/unit/test_spec_limits.py computes it): with status (and its compressed copy of the last valid spec)
the object stays under etcd's 1.5 MiB. kopf keeps only a digest of it (modelship.handlers.diffbase)."""

MAX_INTERVAL = timedelta(hours=1)
"""The analysis interval is also the PromQL window and the check cadence: past an hour a breach stays live for
hours (failureLimit x interval) and every query scans hours of samples."""
AnalysisInterval = Annotated[str, duration_field(MAX_INTERVAL), AfterValidator(positive_within(MAX_INTERVAL))]

MAX_NAME_LENGTH = 52
"""Longest ModelDeployment name: its Deployments are `<name>-<10-character revision hash>` (63, a DNS label as
pod and ReplicaSet names need), its Services `<name>`, `<name>-stable`, `<name>-canary` (DNS-1035 labels, so
no dots and a leading letter), and the name is a label value (at most 63)."""
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


PRINTABLE_ASCII = r"^[!-~]+$"
"""Image references and repository URIs: printable ASCII without spaces (percent-encode anything else)."""
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)]
"""A Kubernetes label key (node labels, taint keys): optional DNS prefix and '/', then a name of at most 63."""
LabelValue = Annotated[str, Field(max_length=63, pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")]
"""A Kubernetes label value (node labels, taint values)."""


# --- model and serving -------------------------------------------------------------------------------------


class ModelRef(ApiModel):
    """The Triton model and the version this deployment should serve."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="Model name as it appears in the Triton model repository (a directory name)."
    )
    version: Annotated[str, Field(max_length=19, pattern=r"^[1-9][0-9]{0,18}$")] = Field(
        description="Triton model version to roll out: a positive integer (quoted in YAML), the version "
        "directory in the repository."
    )
    repository: Annotated[str, Field(min_length=1, max_length=1024, pattern=PRINTABLE_ASCII)] = Field(
        description="Model repository Triton loads from, e.g. s3://models/triton, gs://..., or file:///models."
    )


class Resources(ApiModel):
    """Per-pod resources of a Triton server; gpus becomes the nvidia.com/gpu request and limit."""

    gpus: Annotated[int, Field(ge=0, le=16)] = Field(
        default=1, description="GPUs per pod (nvidia.com/gpu request and limit). 0 serves on CPU."
    )
    cpu: Annotated[str, Field(max_length=32, pattern=r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")] = Field(
        default="2", description="CPU request and limit per pod, a Kubernetes quantity such as '4' or '500m'."
    )
    memory: Annotated[str, Field(max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")] = Field(
        default="8Gi", description="Memory request and limit per pod, a Kubernetes quantity such as '16Gi'."
    )


class Toleration(ApiModel):
    """A pod toleration, as in the core Pod API (for tainted GPU node pools)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                "a toleration with operator Exists takes no value",
            ),
            cel(
                "has(self.key) || has(self.operator) && self.operator == 'Exists'",
                "a toleration without key needs operator Exists (it then tolerates every taint)",
            ),
        )
    )

    key: LabelKey | None = Field(
        default=None,
        description="Taint key the toleration applies to; empty with operator Exists matches all taints.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None,
        description="Exists (any value) or Equal (value must match); Kubernetes treats empty as Equal.",
    )
    value: LabelValue | None = Field(
        default=None, description="Taint value when operator is Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: Annotated[int, Field(ge=0, le=10**9)] | None = Field(
        default=None,
        description="How long, in seconds, a NoExecute taint is tolerated before eviction; unset: forever.",
    )


class EnvVar(ApiModel):
    """A plain environment variable for the Triton container."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")] = Field(
        description="Variable name, e.g. CUDA_VISIBLE_DEVICES."
    )
    value: Annotated[str, Field(max_length=MAX_ENV_VALUE)] = Field(default="", description="Variable value.")


class Serving(ApiModel):
    """How every revision's Triton pods run. A change here (or in model) creates a new revision."""

    image: Annotated[str, Field(min_length=1, max_length=1024, pattern=PRINTABLE_ASCII)] = Field(
        default="nvcr.io/nvidia/tritonserver:24.10-py3",
        description="Triton Inference Server container image.",
    )
    replicas: Annotated[int, Field(ge=1, le=1000)] = Field(default=1, description="Triton pods per revision.")
    resources: Resources = Field(default_factory=Resources, description="Per-pod GPU, CPU and memory.")
    node_selector: Annotated[
        dict[LabelKey, LabelValue],
        Field(
            max_length=16,
            json_schema_extra=cel_rules(
                cel(
                    f"self.all(k, k.size() <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))",
                    "every nodeSelector key must be a label key: an optional DNS prefix and '/', then at most 63 "
                    "letters, digits, '-', '_' or '.', e.g. nvidia.com/gpu.product",
                )
            ),
        ),
    ] = Field(
        default_factory=dict,
        description="Node labels the pods must match, e.g. {nvidia.com/gpu.product: NVIDIA-H100}.",
    )
    tolerations: Annotated[list[Toleration], Field(max_length=16)] = Field(
        default_factory=list, description="Tolerations for tainted (e.g. GPU) nodes."
    )
    env: Annotated[
        list[EnvVar],
        Field(
            max_length=64,
            json_schema_extra=cel_rules(
                cel(
                    f"self.map(e, has(e.value) ? e.value.size() : 0).sum() <= {MAX_ENV_TEXT}",
                    f"environment values must hold at most {MAX_ENV_TEXT} characters together: "
                    "mount larger settings from a ConfigMap in the model repository instead",
                )
            ),
        ),
    ] = Field(
        default_factory=list, description="Extra environment variables for the Triton container."
    )
    args: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=32)] = Field(
        default_factory=list,
        description="Extra tritonserver arguments, appended after the ones Modelship sets "
        "(model repository, version pin, ports, metrics).",
    )


# --- traffic -----------------------------------------------------------------------------------------------


Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]


class ParentRef(ApiModel):
    """A Gateway the HTTPRoute attaches to."""

    name: Annotated[str, Field(min_length=1, max_length=253)] = Field(description="Gateway name.")
    namespace: Annotated[str, Field(min_length=1, max_length=63)] | None = Field(
        default=None,
        description="Gateway namespace; defaults to the route's (the ModelDeployment's namespace).",
    )
    section_name: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description="Listener name on the Gateway; unset attaches to every listener that allows it.",
    )


class MirrorMode(StrEnum):
    """How the shadow copy is asked of a Gateway API implementation."""

    REQUEST_MIRROR = "RequestMirror"
    EXTERNAL = "External"


class GatewayApiRouter(ApiModel):
    """Route with a Gateway API HTTPRoute: backendRefs weights, RequestMirror filter for shadow."""

    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=8)] = Field(
        description="Gateways the HTTPRoute attaches to."
    )
    hostnames: Annotated[list[Hostname], Field(max_length=16)] = Field(
        default_factory=list, description="Hostnames the route answers; empty matches all."
    )
    mirror: MirrorMode = Field(
        default=MirrorMode.REQUEST_MIRROR,
        description=(
            "RequestMirror: the shadow copy is the HTTPRoute's RequestMirror filter (the Gateway API extended "
            "feature HTTPRouteRequestMirror). External: for implementations without it (Traefik 3.6 answers 500 "
            "to every request of a rule carrying the filter), no filter is written and the copy is described on "
            "the route's annotation modelship.dev/mirror (the filter's requestMirror as JSON) for a mirroring "
            "proxy to make; without one the Shadow stage gets no canary traffic and is judged as too little traffic."
        ),
    )


class IstioRouter(ApiModel):
    """Route with an Istio VirtualService: route weights, mirror and mirrorPercentage for shadow."""

    gateways: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(max_length=8)] = Field(
        default_factory=list, description="Istio gateways; empty means the mesh (sidecars) only."
    )
    hosts: Annotated[list[Hostname], Field(max_length=16)] = Field(
        default_factory=list,
        description="Hosts the VirtualService answers; defaults to the model Service's name.",
    )


class NoRouter(ApiModel):
    """No mesh: one Service selects both revisions and the canary weight is the share of ready replicas."""


class Traffic(ApiModel):
    """Exactly one traffic router."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.gatewayAPI) ? 1 : 0) + (has(self.istio) ? 1 : 0) + (has(self.none) ? 1 : 0) == 1",
                "set exactly one of traffic.gatewayAPI, traffic.istio or traffic.none",
            )
        )
    )

    gateway_api: GatewayApiRouter | None = Field(
        default=None, alias="gatewayAPI", description="Use a Gateway API HTTPRoute."
    )
    istio: IstioRouter | None = Field(default=None, description="Use an Istio VirtualService.")
    none: NoRouter | None = Field(default=None, description="No router: canary weight by replica ratio.")

    @property
    def kind(self) -> Literal["gatewayAPI", "istio", "none"]:
        """The router in use; a spec without one defaults to replica-ratio so nothing is left unrouted."""
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.istio is not None:
            return "istio"
        return "none"


# --- rollout -----------------------------------------------------------------------------------------------


class ShadowStage(ApiModel):
    """Mirror live traffic to the canary and judge it before it serves anyone: its latency and errors, and (with
    `compare`, on by default) its answers against stable's on the same requests."""

    mirror_percent: Annotated[int, Field(ge=1, le=100)] = Field(
        default=100, description="Percent of live requests mirrored to the canary (1-100)."
    )
    duration: Duration = Field(description="How long the shadow stage lasts, e.g. '10m'.")
    compare: CompareSpec = Field(
        default_factory=CompareSpec,
        description="Compare canary's answers with stable's on the mirrored requests (on unless enabled: false); "
        "judged by slo.outputAgreement and slo.outputShift (max 0.25 unless set).",
    )


class Approval(ApiModel):
    """A manual gate: the rollout waits here until `kubectl modelship promote`."""


class CanaryStep(ApiModel):
    """One canary step: either a weight held for a duration, or an approval gate."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.weight) != has(self.approval)",
                "a step sets exactly one of weight (with duration) or approval",
            ),
            cel("!has(self.weight) || has(self.duration)", "a weight step needs a duration, e.g. '5m'"),
            cel("!has(self.approval) || !has(self.duration)", "an approval step takes no duration"),
        )
    )

    weight: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Percent of live traffic sent to the canary during this step (1-100)."
    )
    duration: Duration | None = Field(default=None, description="How long the weight is held, e.g. '5m'.")
    approval: Approval | None = Field(default=None, description="Wait for `kubectl modelship promote`.")


class CanaryStage(ApiModel):
    """Traffic steps; weights must increase. After the last step the canary is promoted."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.steps.filter(s, has(s.weight)).map(s, s.weight).isSorted() && "
                "self.steps.filter(s, has(s.weight)).all(s, "
                "self.steps.filter(t, has(t.weight) && t.weight == s.weight).size() == 1)",
                "canary step weights must strictly increase, e.g. 5, 25, 50",
                ".steps",
            )
        )
    )

    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=MAX_STEPS)] = Field(
        description="Ordered steps; weight steps must have strictly increasing weights."
    )


class NoDataPolicy(StrEnum):
    HOLD = "Hold"
    FAIL = "Fail"


class GpuSurgePolicy(StrEnum):
    ALLOW = "Allow"
    SCALE_DOWN_STABLE = "ScaleDownStable"
    NEVER = "Never"


class Analysis(ApiModel):
    """How SLO checks run and how missing evidence is treated (it never counts as a pass)."""

    interval: AnalysisInterval = Field(
        default="1m", description="Time between SLO checks; also the query window. At most 1h."
    )
    failure_limit: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description="Consecutive failed checks that trigger a rollback."
    )
    min_requests: Annotated[int, Field(ge=0, le=10**9)] = Field(
        default=100,
        description="Fewer canary requests than this in the window makes a check Inconclusive, never a pass.",
    )
    on_no_data: NoDataPolicy = Field(
        default=NoDataPolicy.HOLD,
        description="Hold: keep the step and re-check when a query returns no data; Fail: count it as a failed check.",
    )
    on_metrics_unavailable: NoDataPolicy = Field(
        default=NoDataPolicy.HOLD,
        description="When Prometheus cannot be reached. Hold: wait (rolled back at progressDeadline); "
        "Fail: count it as a failed check.",
    )


class KeepPrevious(ApiModel):
    """The revision that served before a promotion, kept deployed and Ready through the watch window."""

    replicas: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=1,
        description="Pods of the previous revision kept Ready during the window (0: none; a rollback in the "
        "window then redeploys and validates it first). A breach routes all traffic back to them at once.",
    )


class PostPromotion(ApiModel):
    """Keep judging the new stable after promotion, with the previous revision warm to fall back on."""

    window: Duration = Field(
        description="How long after promotion the new stable is still judged against the SLOs, e.g. '15m'. "
        "A breach in the window rolls back to the previous revision."
    )
    keep_previous: KeepPrevious = Field(
        default_factory=KeepPrevious, description="The previous revision kept warm during the window."
    )


_IV = "self.analysis.interval"
_DUR_GUARD = f"has(self.analysis) && has({_IV}) && {cel_duration_ok(_IV)}"


class Rollout(ApiModel):
    """The stages a new revision goes through, and the guard rails around them."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                f"!has(self.shadow) || !({_DUR_GUARD}) || !{cel_duration_ok('self.shadow.duration')} || "
                f"duration(self.shadow.duration) >= duration({_IV})",
                "shadow.duration must be at least analysis.interval, or no SLO check could run in the shadow stage",
                ".shadow.duration",
            ),
            cel(
                f"!has(self.canary) || !({_DUR_GUARD}) || self.canary.steps.all(s, !has(s.duration) || "
                f"!{cel_duration_ok('s.duration')} || duration(s.duration) >= duration({_IV}))",
                "every canary step duration must be at least analysis.interval, or no SLO check could run in it",
                ".canary.steps",
            ),
            cel(
                f"!has(self.postPromotion) || !({_DUR_GUARD}) || !{cel_duration_ok('self.postPromotion.window')} || "
                f"duration(self.postPromotion.window) >= duration({_IV})",
                "postPromotion.window must be at least analysis.interval, or no SLO check could run in it",
                ".postPromotion.window",
            ),
            cel(
                f"!has(self.progressDeadline) || !{cel_duration_ok('self.progressDeadline')} || "
                f"!({_DUR_GUARD}) || "
                "!has(self.analysis.failureLimit) || duration(self.progressDeadline).getMilliseconds() >= "
                f"duration({_IV}).getMilliseconds() * self.analysis.failureLimit",
                "progressDeadline must be at least analysis.interval x analysis.failureLimit, "
                "or a rollout would time out before its failed checks could count",
                ".progressDeadline",
            ),
        )
    )

    shadow: ShadowStage | None = Field(default=None, description="Optional shadow stage before live traffic.")
    canary: CanaryStage = Field(
        default_factory=lambda: CanaryStage(steps=[CanaryStep(weight=10, duration="5m")]),
        description="Canary steps with live traffic.",
    )
    analysis: Analysis = Field(default_factory=Analysis, description="SLO check cadence and evidence policies.")
    progress_deadline: Duration = Field(
        default="15m",
        description="Longest a stage may go without progress (pods not ready, no evidence, Prometheus down) "
        "before rolling back. Approval waits are exempt.",
    )
    scale_down_delay: Duration = Field(
        default="30s", description="Wait after traffic leaves a revision before scaling it to zero."
    )
    post_promotion: PostPromotion | None = Field(
        default=None,
        description="Watch the new stable for a window after promotion with the previous revision warm; a breach "
        "routes traffic back to it at once (spec untouched). Off when unset.",
    )
    gpu_surge: GpuSurgePolicy = Field(
        default=GpuSurgePolicy.ALLOW,
        description="Allow: run canary pods beside stable ones; ScaleDownStable: when the canary cannot be "
        "scheduled, free GPUs by shrinking stable, never below what its traffic share needs; Never: fail the "
        "rollout if the canary does not fit.",
    )


# --- validation --------------------------------------------------------------------------------------------


class ContractMode(StrEnum):
    STRICT = "Strict"
    COMPATIBLE = "Compatible"
    OFF = "Off"


TensorData = list[float] | list[int] | list[bool] | list[str]
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
"""KServe v2 tensor datatypes."""
TensorName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[-A-Za-z0-9_.:/]+$")]
"""A tensor name as Triton models use them, e.g. INPUT__0, input_ids, serving_default_x:0."""
TensorValue = float | Annotated[str, Field(max_length=MAX_TENSOR_TEXT)] | bool
"""CEL cannot see tensor values (a union of types, untyped in the CRD): their totals are the operator's to check."""


class SampleInput(ApiModel):
    """One input tensor of a sample request (KServe v2 inference protocol)."""

    name: TensorName = Field(description="Input tensor name.")
    datatype: Datatype = Field(
        description="KServe v2 datatype, e.g. FP32."
    )
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=0, max_length=8)] = Field(
        description="Tensor shape, e.g. [1, 4]."
    )
    data: Annotated[list[TensorValue], Field(max_length=MAX_SAMPLE_VALUES)] = Field(
        description="Flattened tensor values, row-major."
    )


class ExpectedOutput(ApiModel):
    """What one output tensor of a sample must look like."""

    name: TensorName = Field(description="Output tensor name.")
    datatype: Datatype | None = Field(
        default=None, description="Expected KServe v2 datatype, e.g. FP32; unset: not checked."
    )
    shape: Annotated[list[int], Field(max_length=8)] | None = Field(
        default=None, description="Expected shape, e.g. [1, 1]; unset: not checked."
    )
    data: Annotated[list[TensorValue], Field(max_length=MAX_SAMPLE_VALUES)] | None = Field(
        default=None, description="Expected values (flattened, row-major); unset: not checked."
    )
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=1e-4, description="Absolute tolerance when comparing numeric values."
    )


class SampleExpectation(ApiModel):
    """Expected outputs of a sample request."""

    outputs: Annotated[list[ExpectedOutput], Field(max_length=8)] = Field(
        default_factory=list, description="Outputs that must be present and match."
    )


class Sample(ApiModel):
    """An inference request sent to every canary pod before any traffic moves."""

    name: Annotated[str, Field(min_length=1, max_length=63)] | None = Field(
        default=None, description="Optional label used in messages and Events."
    )
    inputs: Annotated[list[SampleInput], Field(min_length=1, max_length=8)] = Field(description="Input tensors.")
    expect: SampleExpectation = Field(default_factory=SampleExpectation, description="Expected outputs.")


class Validation(ApiModel):
    """Model-aware checks on the canary before it receives traffic."""

    contract: ContractMode = Field(
        default=ContractMode.STRICT,
        description="Strict: inputs/outputs (names, datatypes, shapes) must equal stable's. Compatible: the "
        "canary may add outputs and widen dimensions to -1. Off: not checked.",
    )
    samples: Annotated[list[Sample], Field(max_length=MAX_SAMPLES)] = Field(
        default_factory=list,
        description=f"Sample inferences that must succeed and match; at most {MAX_SAMPLE_VALUES} tensor values "
        "together.",
    )


# --- the resource ------------------------------------------------------------------------------------------


class ModelDeploymentSpec(ApiModel):
    """Desired state: which model version to serve, how, and how to roll it out safely."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.rollout) || !has(self.rollout.shadow) || !has(self.traffic) || !has(self.traffic.none)",
                "traffic.none splits traffic by replica counts and cannot mirror requests: remove rollout.shadow, "
                "or route with traffic.gatewayAPI or traffic.istio",
                ".rollout.shadow",
            ),
            NOTIFICATION_NAMES_UNIQUE,
        )
    )

    model: ModelRef = Field(description="Model name, version and repository.")
    serving: Serving = Field(default_factory=Serving, description="Triton serving spec for every revision.")
    traffic: Traffic = Field(
        default_factory=lambda: Traffic(none=NoRouter()), description="Traffic router (exactly one)."
    )
    rollout: Rollout = Field(default_factory=Rollout, description="Shadow and canary stages and guard rails.")
    slo: Slo = Field(
        default_factory=Slo,
        description="SLO thresholds that gate every step; with none declared, errorRate max 0.01 applies.",
    )
    validation: Validation = Field(default_factory=Validation, description="Checks before traffic moves.")
    notifications: Annotated[list[Subscription], Field(max_length=MAX_SUBSCRIPTIONS)] = Field(
        default_factory=list,
        description="Who hears about this rollout's decisions (approval gates, promotions, rollbacks with their "
        "evidence): webhooks and chat services, besides the operator-level subscriptions.",
    )
