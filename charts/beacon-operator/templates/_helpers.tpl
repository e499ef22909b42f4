{{/*
The chart's name, or nameOverride.
*/}}
{{- define "beacon-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, or <release>-<chart> (just <release>
when it already contains the chart's name). Cluster-scoped objects (ClusterRole,
ClusterRoleBinding) use it too, so two releases in one cluster need different release names.
*/}}
{{- define "beacon-operator.fullname" -}}
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

{{- define "beacon-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object of the release.
*/}}
{{- define "beacon-operator.labels" -}}
helm.sh/chart: {{ include "beacon-operator.chart" . }}
{{ include "beacon-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: beacon-operator
{{- end }}

{{/*
The operator pods' labels that the Deployment, the metrics Service and the member pods'
NetworkPolicy select on. They must never change for an installed release.
*/}}
{{- define "beacon-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "beacon-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "beacon-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "beacon-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: with serviceAccount.create=false, name the existing ServiceAccount the operator runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "beacon-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The default beacon node image (the operator's --default-node-image), of the same release as
the operator unless nodeImage.tag says otherwise.
*/}}
{{- define "beacon-operator.nodeImage" -}}
{{- printf "%s:%s" .Values.nodeImage.repository (default .Chart.AppVersion .Values.nodeImage.tag) }}
{{- end }}

{{/*
The namespaces that get the member pods' NetworkPolicy, one per line.
*/}}
{{- define "beacon-operator.networkPolicyNamespaces" -}}
{{- if .Values.networkPolicy.namespaces }}
{{- range .Values.networkPolicy.namespaces }}
{{ . }}
{{- end }}
{{- else if .Values.watchNamespace }}
{{ .Values.watchNamespace }}
{{- else }}
{{ .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Cross-field checks the schema cannot word well; each names the values and the fix.
*/}}
{{- define "beacon-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "leaderElection.enabled: replicaCount is %d, and without leader election every replica would reconcile at once; set leaderElection.enabled=true or replicaCount=1" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
