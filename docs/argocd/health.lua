-- Argo CD health check for Taskforge's Workflow and WorkflowRun (taskforge.io/v1alpha1).
-- The same script serves both kinds; docs/gitops.md shows where it goes (argocd-cm).
-- It reads the kstatus conditions the operator writes (Ready, Reconciling, Stalled), so Argo CD
-- agrees with Flux and kpt: a failed, cancelled or stuck run is Degraded, never Healthy.
local hs = {}
local status = obj.status
if status == nil or (status.observedGeneration == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Taskforge operator to look at it"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local found = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    found[condition.type] = condition
  end
end
local function is_true(type)
  return found[type] ~= nil and found[type].status == "True"
end
local function said(type, default)
  local condition = found[type]
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return default
end
if is_true("Stalled") then
  hs.status = "Degraded"
  hs.message = said("Stalled", "Stalled")
elseif is_true("Reconciling") then
  hs.status = "Progressing"
  hs.message = said("Reconciling", "Reconciling")
elseif is_true("Ready") then
  hs.status = "Healthy"
  hs.message = said("Ready", "Ready")
elseif status.phase == "Failed" or status.phase == "Cancelled" then
  -- Written by an operator older than the kstatus conditions.
  hs.status = "Degraded"
  hs.message = status.message or status.phase
elseif status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = status.message or status.phase
else
  hs.status = "Progressing"
  hs.message = status.message or "Waiting for the operator"
end
return hs
