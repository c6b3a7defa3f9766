{{/* Name of the release's objects. */}}
{{- define "thanos-receiver.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "thanos-receiver.labels" -}}
app.kubernetes.io/name: thanos-receiver-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "thanos-receiver.selectorLabels" -}}
app.kubernetes.io/name: thanos-receiver-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "thanos-receiver.serviceAccountName" -}}
{{- default (include "thanos-receiver.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "thanos-receiver.leaderElection" -}}
{{- if eq (toString .Values.leaderElection) "auto" -}}
{{- gt (int .Values.replicas) 1 -}}
{{- else -}}
{{- .Values.leaderElection -}}
{{- end -}}
{{- end -}}
