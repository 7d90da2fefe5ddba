-- Argo CD action "pause" for modelship.dev/ModelDeployment.
-- Sets the modelship.dev/request annotation (the operator handles each id once); never touches spec,
-- which Git owns. The id is unique per action, second and resourceVersion: a double click on an unchanged
-- object sends the same id, which the operator treats as one request. Argo CD does not pass the user to Lua,
-- so "by" is "argocd"; Argo CD's own audit event (ResourceActionRan) names the user.
local os = require("os")
local action = "pause"
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
  '{"id":"' .. id .. '","action":"' .. action .. '","by":"argocd","at":"' .. at .. '"}'
return obj
