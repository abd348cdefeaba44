{{/* Copied from ../kvmount/templates/_provider.tpl by deploy/render (make manifests): edit that. */}}
{{/* The Azure provider's DaemonSet, for either chart layout. Arguments:
root (the chart's context), p (the provider's settings, normalized: image,
resources, placement, healthz*, metricsPort (0: no metrics), cacheTTL,
constructPEMChain, writeCertAndKeyInSeparateFiles, providersDir, …), name
(the DaemonSet's) and app (its pods' label). One per node, on the host
network so that pod identity's NMI at localhost:2579 and the node's IMDS
are reachable. It needs no privilege; root only to create its socket in the
host's providers dir, which upstream's driver shares (docs/compatibility.md). */}}
{{- define "kvmount.providerDaemonSet" -}}
{{- $r := .root }}
{{- $p := .p }}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .name }}
  namespace: {{ $r.Release.Namespace }}
  labels:
    {{- include "kvmount.labels" $r | nindent 4 }}
    app.kubernetes.io/component: provider-azure
  {{- with $p.daemonsetAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  selector:
    matchLabels: {app: {{ .app }}}
  updateStrategy:
    {{- toYaml $p.updateStrategy | nindent 4 }}
  template:
    metadata:
      labels:
        app: {{ .app }}
        {{- include "kvmount.labels" $r | nindent 8 }}
        app.kubernetes.io/component: provider-azure
        {{- with $p.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $p.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      hostNetwork: true
      dnsPolicy: {{ $p.dnsPolicy }}
      serviceAccountName: csi-secrets-store-provider-azure
      securityContext:
        seccompProfile: {type: RuntimeDefault}
      nodeSelector:
        kubernetes.io/os: linux
        {{- with $p.nodeSelector }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $p.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $p.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $p.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $r.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
      - name: provider-azure
        image: {{ include "kvmount.image" (dict "image" $p.image "appVersion" $r.Chart.AppVersion) }}
        imagePullPolicy: {{ $p.image.pullPolicy }}
        args:
        {{- with include "kvmount.logArgs" $r | trim }}{{ . | nindent 8 }}{{ end }}
        - --endpoint=unix:///provider/azure.sock
        - --construct-pem-chain={{ $p.constructPEMChain }}
        - --write-cert-and-key-in-separate-files={{ $p.writeCertAndKeyInSeparateFiles }}
        - --healthz-port={{ $p.healthzPort }}
        - --healthz-path={{ $p.healthzPath }}
        - --healthz-timeout={{ $p.healthzTimeout }}
        {{- if $p.metricsPort }}
        - --prometheus-port={{ $p.metricsPort }}
        {{- else }}
        - --metrics-addr=none
        {{- end }}
        - --cache-ttl={{ $p.cacheTTL }}
        {{- with $p.customUserAgent }}
        - --custom-user-agent={{ . }}
        {{- end }}
        {{- with $p.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        env:
        - name: KUBE_NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        {{- with $p.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        securityContext:
          {{- if $p.privileged }}
          privileged: true
          {{- else }}
          runAsUser: 0
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
          {{- end }}
        {{- with $p.metricsPort }}
        ports:
        - {name: metrics, containerPort: {{ . }}}
        {{- end }}
        livenessProbe:
          httpGet: {host: 127.0.0.1, path: {{ $p.healthzPath }}, port: {{ $p.healthzPort }}}
          periodSeconds: 30
          timeoutSeconds: 10
          failureThreshold: 3
        readinessProbe:
          httpGet: {host: 127.0.0.1, path: {{ $p.healthzPath }}, port: {{ $p.healthzPort }}}
          periodSeconds: 5
        resources:
          {{- toYaml $p.resources | nindent 10 }}
        volumeMounts:
        - {name: providers-dir, mountPath: /provider}
        {{- with $p.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      volumes:
      - {name: providers-dir, hostPath: {path: {{ $p.providersDir }}, type: DirectoryOrCreate}}
      {{- with $p.volumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end -}}

{{/* The Azure provider's service account: it records Events on pods (a
SecretProviderClass's warnings: a misspelt field, a file written twice)
and nothing else. Without it the provider logs the warnings instead.
Argument: the chart's context. */}}
{{- define "kvmount.providerRBAC" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: csi-secrets-store-provider-azure
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kvmount.labels" . | nindent 4 }}
    app.kubernetes.io/component: provider-azure
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: csi-secrets-store-provider-azure
  labels:
    {{- include "kvmount.labels" . | nindent 4 }}
    app.kubernetes.io/component: provider-azure
rules:
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: csi-secrets-store-provider-azure
  labels:
    {{- include "kvmount.labels" . | nindent 4 }}
    app.kubernetes.io/component: provider-azure
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: csi-secrets-store-provider-azure
subjects:
- kind: ServiceAccount
  name: csi-secrets-store-provider-azure
  namespace: {{ .Release.Namespace }}
{{- end -}}
