-- Argo CD health check for modelship.dev/ModelDeployment.
-- Written for Argo CD's sandbox: base and table libraries only (no string or math), so it uses `..` and
-- plain comparisons. Status is the operator's; the check trusts it only once the operator has observed the
-- current generation, so a fresh Git change shows Progressing instead of the previous rollout's verdict.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelship operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelship operator to observe generation " .. generation
  return hs
end

local phase = status.phase
local message = status.message
if message == nil or message == "" then
  message = phase
end

if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "RolledBack" or phase == "Failed" or phase == "Invalid" then
  hs.status = "Degraded"
  message = phase .. ": " .. message
elseif phase == "Paused" or status.paused == true then
  hs.status = "Suspended"
  message = "Paused: " .. message
elseif status.awaitingApproval == true then
  hs.status = "Suspended"
  message = "Awaiting approval (run the promote action): " .. message
elseif phase == "Progressing" and status.stage == "PostPromotion" then
  hs.status = "Progressing"
  message = "Watching after promotion (a breach rolls back to the previous revision): " .. message
elseif phase == "Pending" or phase == "Progressing" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  message = "Unknown phase " .. phase .. ": " .. message
end
hs.message = message
return hs
