{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "modelship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-modelship, or the release name when it already says modelship. */}}
{{- define "modelship.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelship.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelship.labels" -}}
helm.sh/chart: {{ include "modelship.chart" . }}
{{ include "modelship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modelship
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelship.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelship.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Rules the operator needs in every namespace it watches. Least privilege, and why:
- modeldeployments: list/watch them (kopf); patch for the operator's finalizer (metadata only: RBAC cannot
  tell metadata from spec, the operator never writes spec); get to re-read one after a write conflict.
  No create/update/delete.
- modeldeployments/status: patch; the operator's only durable state.
- every child kind (deployments, replicasets, pods, services, httproutes, virtualservices): list/watch with
  the label selector app.kubernetes.io/managed-by=modelship: the watch caches the control loop reads.
- deployments, services: the Triton revisions and their Services it owns. Every write is a server-side
  apply (PATCH, which creates what is missing: patch + create), sent only when it changes something;
  deployments are read to keep a revision's pod template and to check ownership of a name not in the cache;
  services are never deleted (owner references let the garbage collector remove them).
- replicasets, pods: read-only; the ownerReference chain Pod -> ReplicaSet -> Deployment decides which pods
  are ours (Triton checks, scheduling state for GPU surge).
- httproutes, virtualservices: get (ownership of a name not in the cache), apply, delete on a router switch
  or deletion.
- events (core v1 only, create): decision evidence on `kubectl describe`; never patched.
No `update` anywhere, no Secrets: the Prometheus token is mounted as a file by the kubelet.
tests/unit/test_rbac.py derives these from every adapter call and fails on any difference.
*/}}
{{- define "modelship.namespacedRules" -}}
- apiGroups: [modelship.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [modelship.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# the shadow comparator's own identity: a ServiceAccount bound to the modelship-comparator ClusterRole only
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  resourceNames: ['{{ include "modelship.fullname" . }}-comparator']
  verbs: [bind]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Notification URLs and signing keys: `get` on the Secrets named in notifications.secretNames, no other
     Secret (RBAC resourceNames; no list or watch). */}}
{{- define "modelship.notificationRules" -}}
{{- with .Values.notifications.secretNames }}
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson . }}
  verbs: [get]
{{- end }}
{{- end }}

{{/* Cluster-wide in both modes: kopf observes CRDs (list/watch); `get` on namespaces reads the
     per-namespace Prometheus URL annotation (modelship.dev/prometheus-url); `get` on Gateways (usually in
     another namespace) and GatewayClasses reads whether a route's gateway can mirror (status.supportedFeatures),
     so a Shadow stage is refused where a RequestMirror filter would break live traffic. */}}
{{- define "modelship.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, gatewayclasses]
  verbs: [get]
# Is the requester policy in force? (else manual requesters are recorded as unverified)
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
  resourceNames: [modelship-requester]
  verbs: [get]
{{- end }}

{{/* Namespaced mode only: kopf lists and watches namespaces to serve the --namespace names it was given
     (cluster-wide, it never looks at them). */}}
{{- define "modelship.namespaceScanRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Release namespace, with leader election on: the Lease the replicas elect a leader with (the kubernetes
     client's LeaseLock reads, creates and replaces it; nothing lists, watches, patches or deletes it). */}}
{{- define "modelship.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
