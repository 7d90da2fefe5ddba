"""Is the modelship-requester admission policy in force? Read from the API server, cached for a minute."""

from __future__ import annotations

import logging
import time
from typing import Any

from modelship.adapters.kube import Kube, KubeError
from modelship.domain.admission import POLICY_NAME, policy_enforced

log = logging.getLogger("modelship.admission")
PATH = "/apis/admissionregistration.k8s.io/v1"


class RequesterPolicyCheck:
    """RequesterPolicy port: True only while the policy and its Deny binding are installed as shipped.

    Missing objects, an older cluster without the API, or no right to read them all mean "not in force":
    the operator then records manual requesters as unverified, never as verified.
    """

    def __init__(self, kube: Kube, cache_seconds: float = 60.0) -> None:
        self.kube = kube
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, bool] | None = None

    async def in_force(self) -> bool:
        if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        enforced = policy_enforced(await self._get("validatingadmissionpolicies"),
                                   await self._get("validatingadmissionpolicybindings"))
        if not enforced:
            log.warning("ValidatingAdmissionPolicy %s is not in force: manual requesters are recorded as "
                        "unverified (install crds/requester-policy.yaml or the chart's requesterPolicy)", POLICY_NAME)
        self._cached = (time.monotonic(), enforced)
        return enforced

    async def _get(self, kind: str) -> Any:
        try:
            return await self.kube.read(f"{PATH}/{kind}/{POLICY_NAME}")
        except KubeError as exc:
            log.debug("cannot read %s/%s: %s", kind, POLICY_NAME, exc)
            return None
