{{/* Names and labels shared by every template. */}}

{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tollgate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.labels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tollgate.cpSelector" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "tollgate.dpSelector" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: data-plane
{{- end -}}

{{/* Secret holding the master key: the one given, else the chart's. */}}
{{- define "tollgate.masterKeySecret" -}}
{{- if .Values.cp.masterKey.existingSecret -}}
{{- .Values.cp.masterKey.existingSecret -}}
{{- else -}}
{{- printf "%s-master-key" (include "tollgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.registrationTokenSecret" -}}
{{- if .Values.dp.registrationToken.existingSecret -}}
{{- .Values.dp.registrationToken.existingSecret -}}
{{- else -}}
{{- printf "%s-dp-token" (include "tollgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.databaseSecret" -}}
{{- if .Values.cp.database.existingSecret -}}
{{- .Values.cp.database.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "tollgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.cpUrl" -}}
{{- if .Values.dp.cpUrl -}}
{{- .Values.dp.cpUrl -}}
{{- else -}}
{{- printf "%s://%s-cp:%v" (ternary "https" "http" .Values.cp.tls.enabled) (include "tollgate.fullname" .) .Values.cp.port -}}
{{- end -}}
{{- end -}}
