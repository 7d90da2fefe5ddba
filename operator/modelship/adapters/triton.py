"""Triton checks on canary pods before any traffic moves: live, version READY, I/O contract, samples.

Why: a pod can be Running and Ready to Kubernetes while Triton failed to load the pinned version, or
loaded a version whose signature breaks clients. Only the addresses the controller passes in are ever called:
IPs of pods whose controller chain Pod -> ReplicaSet -> Deployment ends at the ModelDeployment's uid
(`KubeCluster.ready_pod_ips`; labels alone prove nothing). Failures come back as a `ValidationReport`, never
as exceptions:
NotReady (unreachable, not live, version not READY) is transient and retried until the progress deadline;
ContractMismatch and SampleFailed are final verdicts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from modelship.adapters.contract import Signature, compare_output, compare_signatures
from modelship.domain.api import ContractMode, Sample, Validation
from modelship.domain.observations import ValidationFailure, ValidationReport

log = logging.getLogger(__name__)

_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ConnectionError)


@dataclass(frozen=True)
class TritonSettings:
    """Port the Triton HTTP endpoint listens on in every pod, and the short timeouts checks use."""

    http_port: int = 8000
    timeout_s: float = 3.0
    infer_timeout_s: float = 5.0


class NotReady(Exception):
    """A pod cannot be judged yet (unreachable, not live, model version not READY)."""


def endpoint(address: str, default_port: int) -> str:
    """`host[:port]` for tritonclient from an IPv4/IPv6 address or `host:port` (no scheme)."""
    if address.startswith("["):
        return address if "]:" in address else f"{address}:{default_port}"
    if address.count(":") > 1:  # bare IPv6
        return f"[{address}]:{default_port}"
    return address if ":" in address else f"{address}:{default_port}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, InferenceServerException):
        status = exc.status()
        return f"HTTP {status}: {exc.message()}" if status else str(exc.message())
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Pod:
    """One Triton server, reached through tritonclient's asyncio HTTP client."""

    def __init__(self, address: str, settings: TritonSettings) -> None:
        self.address = address
        self.settings = settings
        timeout = max(settings.timeout_s, settings.infer_timeout_s)
        url = endpoint(address, settings.http_port)
        self.client = aioclient.InferenceServerClient(url, conn_timeout=timeout)

    async def _call(self, what: str, call: Any, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(call, timeout or self.settings.timeout_s)
        except _TRANSIENT as exc:
            raise NotReady(f"pod {self.address}: {what} failed ({_why(exc)})") from None
        except InferenceServerException as exc:
            raise NotReady(f"pod {self.address}: {what} failed ({_why(exc)})") from None

    async def ready_signature(self, model: str, version: str) -> Signature:
        """Live, the version READY, and its metadata; NotReady otherwise."""
        if not await self._call("liveness check", self.client.is_server_live()):
            raise NotReady(f"pod {self.address}: Triton is not live")
        if not await self._call("readiness check", self.client.is_model_ready(model, version)):
            label = f"version {version}" if version else "its version"
            raise NotReady(f"pod {self.address}: model '{model}' {label} is not READY")
        metadata = await self._call("metadata", self.client.get_model_metadata(model, version))
        return Signature.from_metadata(metadata)

    async def run_sample(self, model: str, version: str, sample: Sample, label: str) -> str | None:
        """Why the sample failed on this pod, or None. Transport failures raise NotReady."""
        try:
            inputs = [_infer_input(i.name, i.datatype, i.shape, i.data) for i in sample.inputs]
        except ValueError as exc:
            return f"{label}: {exc}"
        wanted = [httpclient.InferRequestedOutput(o.name) for o in sample.expect.outputs] or None
        try:
            result = await asyncio.wait_for(
                self.client.infer(model, inputs, model_version=version, outputs=wanted),
                self.settings.infer_timeout_s,
            )
        except _TRANSIENT as exc:
            raise NotReady(f"pod {self.address}: {label} could not be sent ({_why(exc)})") from None
        except InferenceServerException as exc:
            return f"{label} on pod {self.address} failed: {_why(exc)}"
        for expected in sample.expect.outputs:
            meta = result.get_output(expected.name)
            values = None
            if meta is not None and expected.data is not None:
                array = result.as_numpy(expected.name)
                values = [] if array is None else array.flatten().tolist()
            problem = compare_output(
                expected,
                None if meta is None else str(meta.get("datatype")),
                None if meta is None else [int(d) for d in meta.get("shape", [])],
                values,
            )
            if problem:
                return f"{label} on pod {self.address}: {problem}"
        return None

    async def close(self) -> None:
        try:
            await self.client.close()
        except Exception:  # closing must never mask the verdict
            log.debug("closing tritonclient for %s failed", self.address, exc_info=True)


def _infer_input(
    name: str, datatype: str, shape: Sequence[int], data: Sequence[Any]
) -> httpclient.InferInput:
    """An InferInput from a declared sample; ValueError names the input when data and shape disagree."""
    count = int(np.prod(shape)) if shape else 1
    if len(data) != count:
        raise ValueError(f"input '{name}' has {len(data)} values for shape {list(shape)} ({count} expected)")
    if datatype == "BYTES":
        array = np.array([str(v).encode("utf-8") for v in data], dtype=np.object_).reshape(shape)
    else:
        try:
            array = np.array(data, dtype=triton_to_np_dtype(datatype)).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"input '{name}' values do not fit {datatype}: {exc}") from None
    tensor = httpclient.InferInput(name, list(shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


class TritonValidator:
    """Runs the Validating-stage checks over the pods it is given."""

    def __init__(self, settings: TritonSettings | None = None) -> None:
        self.settings = settings or TritonSettings()

    async def validate(
        self,
        model: str,
        version: str,
        canary_pods: Sequence[str],
        validation: Validation,
        *,
        stable_pod: str | None = None,
        stable_version: str = "",
    ) -> ValidationReport:
        """Check every canary pod; compare the contract with one stable pod (skipped without one).

        `stable_version` "" asks the stable pod for its only served version (pods are pinned to one).
        """
        if not canary_pods:
            return ValidationReport(False, ValidationFailure.NOT_READY, "no canary pods to check", 0)
        pods = [_Pod(a, self.settings) for a in canary_pods]
        stable = _Pod(stable_pod, self.settings) if stable_pod else None
        try:
            return await self._validate(
                model, version, pods, validation, stable=stable, stable_version=stable_version
            )
        except NotReady as exc:
            return ValidationReport(False, ValidationFailure.NOT_READY, str(exc), len(pods))
        except Exception as exc:  # never raise into the controller
            log.exception("validation of %s version %s failed unexpectedly", model, version)
            message = f"validation error: {_why(exc)}"
            return ValidationReport(False, ValidationFailure.NOT_READY, message, len(pods))
        finally:
            await asyncio.gather(*(p.close() for p in ([*pods, stable] if stable else pods)))

    async def _validate(
        self,
        model: str,
        version: str,
        pods: list[_Pod],
        validation: Validation,
        *,
        stable: _Pod | None,
        stable_version: str,
    ) -> ValidationReport:
        signatures = await asyncio.gather(*(p.ready_signature(model, version) for p in pods))
        notes = [f"{len(pods)} pod(s) serve '{model}' version {version} READY"]
        mode = ContractMode(validation.contract)
        if mode is not ContractMode.OFF and stable is not None:
            try:
                baseline = await stable.ready_signature(model, stable_version)
            except NotReady as exc:
                raise NotReady(f"stable baseline unavailable: {exc}") from None
            for pod, signature in zip(pods, signatures, strict=True):
                problems = compare_signatures(baseline, signature, mode)
                if problems:
                    message = f"contract {mode.value} violated on pod {pod.address}: " + "; ".join(problems)
                    return ValidationReport(False, ValidationFailure.CONTRACT_MISMATCH, message, len(pods))
            notes.append(f"contract {mode.value} matches stable")
        elif mode is not ContractMode.OFF:
            notes.append("contract not compared (no stable revision)")
        for index, sample in enumerate(validation.samples):
            label = f"sample {sample.name or index + 1}"
            failures = await asyncio.gather(*(p.run_sample(model, version, sample, label) for p in pods))
            failed = [f for f in failures if f]
            if failed:
                return ValidationReport(False, ValidationFailure.SAMPLE_FAILED, failed[0], len(pods))
        if validation.samples:
            notes.append(f"{len(validation.samples)} sample(s) passed")
        return ValidationReport(True, None, "; ".join(notes), len(pods))
