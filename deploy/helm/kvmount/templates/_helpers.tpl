{{/* Standard labels of every object; component names the part. */}}
{{- define "kvmount.labels" -}}
app.kubernetes.io/name: kvmount
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kvmount
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image reference: repository@digest, else repository:tag (default appVersion). */}}
{{- define "kvmount.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .appVersion }}
{{- end -}}
{{- end -}}

{{/* The logging arguments both binaries take, as upstream's. */}}
{{- define "kvmount.logArgs" -}}
{{- if .Values.logVerbosity }}
- -v={{ .Values.logVerbosity }}
{{- end }}
{{- if .Values.logFormatJSON }}
- --log-format-json=true
{{- end }}
{{- end -}}

{{/* Whether the cluster's CSIDriver has serviceAccountTokenInSecrets (1.35+). */}}
{{- define "kvmount.tokenInSecrets" -}}
{{- if semverCompare ">=1.35.0-0" .Capabilities.KubeVersion.Version }}true{{ end }}
{{- end -}}
