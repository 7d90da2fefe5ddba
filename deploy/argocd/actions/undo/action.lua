-- Argo CD action "undo" for modelship.dev/ModelDeployment: all traffic back to the revision that served before.
-- Writes the two request annotations, as `kubectl modelship` does; never touches spec, which Git owns.
-- modelship.dev/request: the id is unique per action, second and resourceVersion, so a double click on an
-- unchanged object sends the same id, which the operator treats as one request.
-- modelship.dev/requested-by: the identity Argo CD patches the cluster as, which the modelship-requester
-- admission policy checks against the user the API server authenticated (any other name is refused). Argo CD
-- does not pass its user to Lua, so history names Argo CD's service account; Argo CD's own audit Event
-- (ResourceActionRan) names the user. Argo CD acting as another identity (not in namespace argocd, or a
-- remote cluster's argocd-manager): python deploy/argocd/generate.py --requester NAME.
local os = require("os")
local action = "undo"
local requester = "system:serviceaccount:argocd:argocd-server"
local at = os.date("!%Y-%m-%dT%H:%M:%SZ")
local version = obj.metadata.resourceVersion
if version == nil then
  version = "0"
end
local id = "argocd-" .. os.date("!%Y%m%dT%H%M%SZ") .. "-" .. action .. "-" .. version
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modelship.dev/request"] =
  '{"id":"' .. id .. '","action":"' .. action .. '","at":"' .. at .. '"}'
obj.metadata.annotations["modelship.dev/requested-by"] = requester
return obj
