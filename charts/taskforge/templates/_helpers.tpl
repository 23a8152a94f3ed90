{{/*
The chart's name, truncated to 63 characters (DNS label limit).
*/}}
{{- define "taskforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, followed by the chart's
name unless the release name already contains it. Cluster-scoped objects (the
ClusterRole and its binding) carry it too, so two releases never collide.
*/}}
{{- define "taskforge.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "taskforge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "taskforge.labels" -}}
helm.sh/chart: {{ include "taskforge.chart" . }}
{{ include "taskforge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: taskforge
{{- end }}

{{/*
Selector labels (immutable on the Deployment: never add to them).
*/}}
{{- define "taskforge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "taskforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskforge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image reference: pinned by image.digest when set (the tag is then ignored:
a digest names one image whatever its tags become).
*/}}
{{- define "taskforge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The image of the step Jobs: executorImage, or the operator's own image.
*/}}
{{- define "taskforge.executorImage" -}}
{{- default (include "taskforge.image" .) .Values.executorImage }}
{{- end }}

{{/*
The name of the Secret holding the Redis URL, or "" when there is none.
*/}}
{{- define "taskforge.redisSecretName" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else if .Values.redis.url }}
{{- printf "%s-redis" (include "taskforge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The key of the Redis URL in that Secret.
*/}}
{{- define "taskforge.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecretKey }}
{{- else }}
{{- "url" }}
{{- end }}
{{- end }}

{{/*
RBAC rules the operator needs in each namespace it serves. Every verb is used:
  - workflows, workflowruns: kopf watches them (get list watch); the operator creates
    runs (cron and webhook triggers, dead-letter replay), deletes old ones (history
    limits) and patches or updates them; their status is written with patch/update.
  - jobs: one per step attempt (create), cancelled or timed out ones deleted.
  - pods: the step result is the pod's termination message (watch); pods/log for
    `taskforge logs`, failure diagnostics and step results over 4 KiB (printed to the log).
  - configmaps: a step result larger than its share of the run's status is kept in a
    ConfigMap owned by the run (create) and read back for later steps' templates (get).
  - events: on runs and workflows, by the operator and kopf.
No Secrets: step pods read the Secrets they name themselves, and only when the run's
creator may read them (SubjectAccessReview); webhook keys get their own Role in the
namespaces listed in `webhook.secretNamespaces` (taskforge.webhookKeyRules).
*/}}
{{- define "taskforge.namespacedRules" -}}
- apiGroups: ["taskforge.io"]
  resources: ["workflows", "workflowruns"]
  verbs: ["get", "list", "watch", "create", "delete", "patch", "update"]
- apiGroups: ["taskforge.io"]
  resources: ["workflows/status", "workflowruns/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Webhook trigger keys (HMAC keys, bearer tokens): get one Secret by name, never list, and
only in the namespaces the chart lists.
*/}}
{{- define "taskforge.webhookKeyRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{/*
Cluster-scoped rules, in every mode: SubjectAccessReviews ask whether a run's creator may
read the Secrets and ConfigMaps its steps name; kopf scans the CRDs to find the resources it
serves, and lists and watches namespaces when it serves a list of them.
*/}}
{{- define "taskforge.clusterRules" -}}
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
The web UI server (ui-*.yaml): its own name and labels. Its pods must not carry the
operator's selector labels (app.kubernetes.io/name), or the operator's Deployment and
Service would select them.
*/}}
{{- define "taskforge.uiName" -}}
{{- printf "%s-ui" (include "taskforge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "taskforge.uiSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-ui" (include "taskforge.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "taskforge.uiLabels" -}}
helm.sh/chart: {{ include "taskforge.chart" . }}
{{ include "taskforge.uiSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: ui
app.kubernetes.io/part-of: taskforge
{{- end }}

{{- define "taskforge.uiServiceAccountName" -}}
{{- if .Values.ui.serviceAccount.create }}
{{- default (include "taskforge.uiName" .) .Values.ui.serviceAccount.name }}
{{- else }}
{{- required "ui.serviceAccount.name is required when ui.serviceAccount.create is false" .Values.ui.serviceAccount.name }}
{{- end }}
{{- end }}
