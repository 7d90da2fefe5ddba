{{/*
The in-cluster web dashboard (webDashboard): names and labels of its own. Its pods must not carry the operator's
selector labels, or the operator's metrics Service and PodDisruptionBudget would count them.
*/}}
{{- define "modelship.web.fullname" -}}
{{- printf "%s-web" (include "modelship.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelship.web.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-web" (include "modelship.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelship.web.labels" -}}
helm.sh/chart: {{ include "modelship.chart" . }}
{{ include "modelship.web.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: web-dashboard
app.kubernetes.io/part-of: modelship
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelship.web.serviceAccountName" -}}
{{- default (include "modelship.web.fullname" .) .Values.webDashboard.serviceAccount.name }}
{{- end }}

{{/* What the dashboard reads: ModelDeployments, nothing else (the pages show status, history and conditions). */}}
{{- define "modelship.web.readRules" -}}
- apiGroups: [modelship.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch]
{{- end }}
