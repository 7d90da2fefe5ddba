"""The shadow comparator: judges canary's answers against stable's on mirrored requests (`modelship compare`)."""
