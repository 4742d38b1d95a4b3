{{/* The chart name, or nameOverride. */}}
{{- define "nodewright.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: fullnameOverride, else the release name (plus the chart name unless the
release name already contains it). 63 characters at most, as DNS labels require. */}}
{{- define "nodewright.fullname" -}}
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

{{- define "nodewright.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects this release's pods; never changes between upgrades. */}}
{{- define "nodewright.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodewright.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nodewright.labels" -}}
helm.sh/chart: {{ include "nodewright.chart" . }}
{{ include "nodewright.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "nodewright.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nodewright.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- /* Karpenter's guides create the account with eksctl as `karpenter`. */}}
{{- default "karpenter" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (tag defaults to appVersion). */}}
{{- define "nodewright.image" -}}
{{- $image := merge (deepCopy .Values.controller.image) .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Karpenter's FEATURE_GATES syntax, which the controller parses. */}}
{{- define "nodewright.featureGates" -}}
{{- $drift := .Values.settings.featureGates.drift }}
{{- if hasKey .Values.settings.featureGates "driftEnabled" }}
{{- $drift = .Values.settings.featureGates.driftEnabled }}
{{- end }}
{{- printf "Drift=%t,SpotToSpotConsolidation=%t" $drift .Values.settings.featureGates.spotToSpotConsolidation }}
{{- end }}

{{/* A setting under today's name, else v0.27-v0.31's (settings.aws), else v0.5's (controller). */}}
{{- define "nodewright.clusterName" -}}
{{- default "" (coalesce .Values.settings.clusterName .Values.settings.aws.clusterName .Values.controller.clusterName) }}
{{- end }}
{{- define "nodewright.clusterEndpoint" -}}
{{- default "" (coalesce .Values.settings.clusterEndpoint .Values.settings.aws.clusterEndpoint .Values.controller.clusterEndpoint) }}
{{- end }}
{{- define "nodewright.defaultInstanceProfile" -}}
{{- default "" (coalesce .Values.settings.defaultInstanceProfile .Values.settings.aws.defaultInstanceProfile) }}
{{- end }}
{{- define "nodewright.interruptionQueue" -}}
{{- default "" (coalesce .Values.settings.interruptionQueue .Values.settings.aws.interruptionQueueName) }}
{{- end }}

{{/* LOG_FORMAT: logFormat, or v0.31's logEncoding (console is our text). */}}
{{- define "nodewright.logFormat" -}}
{{- if eq .Values.logEncoding "console" }}text
{{- else if eq .Values.logEncoding "json" }}json
{{- else }}{{ .Values.logFormat }}
{{- end }}
{{- end }}

{{- /* metadata.annotations of every object: additionalAnnotations, then the object's own. */}}
{{- define "nodewright.annotations" -}}
{{- $all := merge (dict) (.own | default dict) (.root.Values.additionalAnnotations | default dict) -}}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
