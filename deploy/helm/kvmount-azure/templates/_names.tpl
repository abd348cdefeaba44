{{/* The provider's name and DaemonSet name, as upstream's Azure chart makes
them (sscdpa.name, sscdpa.fullname). */}}
{{- define "kvmountazure.name" -}}
{{- default "csi-secrets-store-provider-azure" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "kvmountazure.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kvmountazure.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}
