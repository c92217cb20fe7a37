{{/* Every object's labels. */}}
{{- define "resnet-service.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The pods': what the Deployment, the Service and the PodDisruptionBudget select. */}}
{{- define "resnet-service.selector" -}}
app.kubernetes.io/component: api
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "resnet-service.metadata" -}}
name: {{ .Release.Name }}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "resnet-service.labels" . | nindent 2 }}
{{- end }}
