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

{{/* An image reference: repository@digest, else repository:tag (default
appVersion). Upstream's own images (the repositories its charts default
to, which a values file carried over names) mean kvmount's image of that
part, at the chart's version: their tags are upstream's versions. */}}
{{- define "kvmount.image" -}}
{{- $upstream := dict
  "registry.k8s.io/csi-secrets-store/driver" "ghcr.io/kvmount/secrets-store-csi-driver"
  "k8s.gcr.io/csi-secrets-store/driver" "ghcr.io/kvmount/secrets-store-csi-driver"
  "mcr.microsoft.com/oss/kubernetes-csi/secrets-store/driver" "ghcr.io/kvmount/secrets-store-csi-driver"
  "mcr.microsoft.com/oss/v2/kubernetes-csi/secrets-store/driver" "ghcr.io/kvmount/secrets-store-csi-driver"
  "mcr.microsoft.com/oss/azure/secrets-store/provider-azure" "ghcr.io/kvmount/provider-azure"
  "mcr.microsoft.com/oss/v2/azure/secrets-store/provider-azure" "ghcr.io/kvmount/provider-azure" -}}
{{- $repo := .image.repository -}}
{{- $tag := .image.tag -}}
{{- $digest := .image.digest -}}
{{- if hasKey $upstream $repo -}}
{{- $repo = get $upstream $repo -}}
{{- $tag = "" -}}
{{- $digest = "" -}}
{{- end -}}
{{- if $digest -}}
{{ $repo }}@{{ $digest }}
{{- else -}}
{{ $repo }}:{{ $tag | default .appVersion }}
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

{{/* The driver's name and DaemonSet name, as upstream's driver chart makes
them (sscd.name, sscd.fullname): nameOverride, else
secrets-store-csi-driver; fullnameOverride, else release-name, unless the
release name already holds the name. The pods' app label is the name. */}}
{{- define "kvmount.driverName" -}}
{{- default "secrets-store-csi-driver" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "kvmount.driverFullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kvmount.driverName" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A Go duration ("1h30m", "90s", "500ms") in seconds; "" for none. */}}
{{- define "kvmount.seconds" -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9.]+(ms|us|µs|ns|s|m|h)" (toString .) -1 -}}
{{- $n := regexFind "^[0-9.]+" . | float64 -}}
{{- $unit := regexReplaceAll "^[0-9.]+" . "" -}}
{{- $mul := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001 "ns" 0.000000001 -}}
{{- $total = addf $total (mulf $n (get $mul $unit)) -}}
{{- end -}}
{{- if regexMatch "[0-9]" (toString .) }}{{ $total }}{{ end -}}
{{- end -}}

{{/* The rotation poll interval the driver runs with: the value, else the
driver's default (upstream's chart leaves the flag out when it is empty). */}}
{{- define "kvmount.pollInterval" -}}
{{- .Values.rotationPollInterval | default "2m" -}}
{{- end -}}

{{/* How long the provider shares a read among rotations: provider.cacheTTL,
never longer than the rotation poll (so a new version reaches pods within
the poll the user chose); empty means the poll. Arguments: cacheTTL, poll. */}}
{{- define "kvmount.cacheTTL" -}}
{{- $ttl := .cacheTTL | default .poll -}}
{{- $t := include "kvmount.seconds" $ttl -}}
{{- $p := include "kvmount.seconds" .poll -}}
{{- if and $t $p (gt (float64 $t) (float64 $p)) -}}{{ .poll }}{{- else -}}{{ $ttl }}{{- end -}}
{{- end -}}
