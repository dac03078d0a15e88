{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "tensor-wasm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Release "tensor-wasm" resolves to "tensor-wasm",
which the runbooks rely on (deploy/tensor-wasm, secret/tensor-wasm-tokens).
*/}}
{{- define "tensor-wasm.fullname" -}}
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

{{- define "tensor-wasm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tensor-wasm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tensor-wasm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tensor-wasm.labels" -}}
helm.sh/chart: {{ include "tensor-wasm.chart" . }}
{{ include "tensor-wasm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tensor-wasm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tensor-wasm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding TENSOR_WASM_API_TOKENS: existingSecret or <fullname>-tokens. */}}
{{- define "tensor-wasm.tokenSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-tokens" (include "tensor-wasm.fullname" .)) }}
{{- end }}

{{/* The PVC mounted at /var/lib/tensor-wasm. */}}
{{- define "tensor-wasm.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "tensor-wasm.fullname" .)) }}
{{- end }}

{{/* Dev mode: only on explicit request, with no token source. */}}
{{- define "tensor-wasm.devMode" -}}
{{- if and .Values.auth.devMode (not .Values.auth.existingSecret) (not .Values.auth.tokens) }}true{{- end }}
{{- end }}

{{/* True when the chart generates the admin token. */}}
{{- define "tensor-wasm.generatedToken" -}}
{{- if and (not .Values.auth.devMode) (not .Values.auth.existingSecret) (not .Values.auth.tokens) }}true{{- end }}
{{- end }}
