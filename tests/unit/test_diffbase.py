"""kopf's last-handled-configuration holds a digest, not a copy of the spec: no spec overflows annotations.

Annotations share one 256 KiB budget per object; kopf's default copies the whole spec (non-ASCII escaped to up
to 12 bytes a character) into one of them, so a large spec made every handler's patch fail (issue 8, item 18).
"""

from __future__ import annotations

import json
from typing import Any

import kopf
from modelship.handlers.diffbase import DigestDiffBaseStorage

KEY = "kopf.modelship.dev/last-handled-configuration"
ANNOTATIONS_LIMIT = 256 * 1024


def storage() -> DigestDiffBaseStorage:
    return DigestDiffBaseStorage(prefix="kopf.modelship.dev", key="last-handled-configuration")


def body(spec: dict[str, Any], annotations: dict[str, str] | None = None, phase: str = "Healthy") -> kopf.Body:
    raw = {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "annotations": dict(annotations or {})},
        "spec": spec,
        "status": {"phase": phase},
    }
    return kopf.Body(raw)


def handled(spec: dict[str, Any]) -> dict[str, str]:
    """The annotations after kopf stored what it handled."""
    store, patch = storage(), kopf.Patch()
    store.store(body=body(spec), patch=patch, essence=store.build(body=body(spec)))
    return dict(patch["metadata"]["annotations"])


BIG = {
    "model": {"name": "m", "version": "1", "repository": "r"},
    "serving": {"env": [{"name": "X", "value": "\U0001f600" * 40000}]},
}


def test_a_spec_far_over_the_annotation_budget_leaves_a_small_annotation() -> None:
    spec_bytes = len(json.dumps(BIG))
    assert spec_bytes > ANNOTATIONS_LIMIT  # kopf's default would have overflowed
    annotations = handled(BIG)
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 256


def test_an_unchanged_object_has_no_diff_and_a_changed_one_has() -> None:
    store = storage()
    annotations = handled(BIG)
    same = body(BIG, annotations)
    assert store.fetch(body=same) == store.build(body=same)
    changed_spec = {**BIG, "model": {"name": "m", "version": "2", "repository": "r"}}
    changed = body(changed_spec, annotations)
    assert store.fetch(body=changed) != store.build(body=changed)


def test_a_status_change_is_no_change() -> None:
    store = storage()
    annotations = handled(BIG)
    later = body(BIG, annotations, phase="Progressing")
    assert store.fetch(body=later) == store.build(body=later)


def test_a_copy_stored_by_an_earlier_operator_is_still_read() -> None:
    store = storage()
    old = kopf.AnnotationsDiffBaseStorage(prefix="kopf.modelship.dev", key="last-handled-configuration")
    patch = kopf.Patch()
    small = {"model": {"name": "m", "version": "1", "repository": "r"}}
    old.store(body=body(small), patch=patch, essence=old.build(body=body(small)))
    upgraded = body(small, dict(patch["metadata"]["annotations"]))
    assert store.fetch(body=upgraded) == store.build(body=upgraded)


def test_a_new_object_has_nothing_stored() -> None:
    assert storage().fetch(body=body(BIG)) is None
