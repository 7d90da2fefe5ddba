-- Argo CD action discovery for modelship.dev/ModelDeployment: every action is listed, and enabled only
-- where the operator would act on it (the engine's rules, as in `kubectl modelship`).
local actions = {}
actions["promote"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-forward"}
actions["promote-full"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-fast-forward"}
actions["abort"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-undo"}
actions["pause"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-pause"}
actions["resume"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-play"}
actions["retry"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-redo"}
actions["undo"] = {["disabled"] = true, ["iconClass"] = "fa fa-fw fa-history"}

local status = obj.status
if status == nil then
  return actions
end
local phase = status.phase
local paused = phase == "Paused" or status.paused == true
local active = status.canaryRevision ~= nil

if active then
  actions["abort"]["disabled"] = false
  if status.stage ~= "Promoting" then
    actions["promote-full"]["disabled"] = false
  end
  if status.awaitingApproval == true then
    actions["promote"]["disabled"] = false
  end
  if paused then
    actions["resume"]["disabled"] = false
  else
    actions["pause"]["disabled"] = false
  end
elseif paused then
  actions["resume"]["disabled"] = false
end
if (phase == "RolledBack" or phase == "Failed") and not active then
  actions["retry"]["disabled"] = false
end
-- after promotion: abort (in the watch window) and undo go back to the revision that served before
local watching = status.stage == "PostPromotion" and status.previousRevision ~= nil
if watching then
  actions["abort"]["disabled"] = false
end
local served = status.revisions
if not active and (watching or (served ~= nil and #served > 1)) then
  actions["undo"]["disabled"] = false
end
return actions
