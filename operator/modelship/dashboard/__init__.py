"""The web dashboard (`kubectl modelship dashboard`): fleet and rollout pages, live, acting as the viewer."""
