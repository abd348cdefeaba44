#!/usr/bin/env python3
# Writes the values.schema.json of both charts (make manifests):
#   values-schema.py kvmount/values.schema.json kvmount-azure/values.schema.json
# Every key of upstream's two charts is listed, so that helm refuses an unknown
# or mistyped key; a key kvmount accepts and does not use says so in its
# description (the chart README lists them). The driver chart's own values
# (provider, syncController) are free objects checked by the templates.
import json, sys
UNUSED = "accepted and not used by kvmount: "
def t(typ, desc=None):
    d = {}
    if isinstance(typ, list): d["type"] = typ
    else: d["type"] = typ
    if desc: d["description"] = desc
    return d
def obj(props, desc=None, free=False):
    d = {"type": "object", "properties": props}
    if not free: d["additionalProperties"] = False
    if desc: d["description"] = desc
    return d
S, B, I, O, A = "string", "boolean", "integer", "object", "array"
UPSTREAM_REPO = "while repository is one of upstream's own (its chart's default, which means kvmount's image at the chart's version): " + UNUSED.strip(": ") + " then"
def image(desc=None):
    return obj({"repository": t(S, "a repository of upstream's own means kvmount's image of that part"),
                "tag": t([S, "null"], UPSTREAM_REPO), "digest": t([S, "null"], UPSTREAM_REPO), "pullPolicy": t(S)}, desc)
def unused_image(what):
    return obj({"repository": t(S), "tag": t([S, "null"]), "digest": t([S, "null"]), "pullPolicy": t(S)}, UNUSED + what)
free = lambda desc=None: t(O, desc)
arr = lambda desc=None: t([A, "null"], desc)
linux_driver = obj({
  "enabled": t(B), "image": image(),
  "driver": obj({"resources": free()}),
  "kubeletRootDir": t(S), "providersDir": t(S), "additionalProvidersDirs": arr(),
  "metricsAddr": t([S, "null"], "the driver's /metrics address; empty disables metrics"),
  "healthzPort": t(I, "kvmount: the driver's own /healthz port (upstream's livenessProbe.port)"),
  "nodeSelector": free(), "tolerations": arr(), "affinity": free(), "priorityClassName": t([S, "null"]),
  "updateStrategy": free(), "daemonsetAnnotations": free(), "podAnnotations": free(), "podLabels": free(),
  "env": arr(), "extraArgs": arr(), "volumes": arr(), "volumeMounts": arr(),
  "crds": obj({"enabled": t(B, "with crds.install: whether the chart manages the CRDs"),
               "image": unused_image("the CRDs are templates, no hook job"),
               "annotations": free(UNUSED + "no hook job"), "podLabels": free(UNUSED + "no hook job"),
               "resources": free(UNUSED + "no hook job"), "nodeSelector": free(UNUSED + "no hook job"),
               "tolerations": arr(UNUSED + "no hook job"), "affinity": free(UNUSED + "no hook job"),
               "priorityClassName": t([S, "null"], UNUSED + "no hook job")}),
  "registrarImage": unused_image("the driver registers itself with kubelet"),
  "registrar": obj({"resources": free(UNUSED + "no registrar sidecar"), "logVerbosity": t(I, UNUSED + "no registrar sidecar")}),
  "livenessProbeImage": unused_image("the driver serves /healthz itself"),
  "livenessProbe": obj({"resources": free(UNUSED + "no livenessprobe sidecar")}),
})
windows = free("kvmount builds no Windows images: enabled: true is refused; every other windows value is " + UNUSED.strip(": ") )
provider = obj({
  "enabled": t(B), "image": image(), "resources": free(), "cacheTTL": t([S, "null"]),
  "healthzPort": t(I), "healthzPath": t(S), "healthzTimeout": t(S), "metricsPort": t(I),
  "customUserAgent": t([S, "null"]), "constructPEMChain": t(B), "writeCertAndKeyInSeparateFiles": t(B),
  "privileged": t(B), "dnsPolicy": t(S), "nodeSelector": free(), "tolerations": arr(), "affinity": free(),
  "priorityClassName": t([S, "null"]), "updateStrategy": free(), "daemonsetAnnotations": free(), "podAnnotations": free(),
  "podLabels": free(), "env": arr(), "extraArgs": arr(), "volumes": arr(), "volumeMounts": arr()}, "kvmount's Azure provider (the upstream Azure chart's linux block)")
sync = free("the SecretSync controller (docs/secret-sync.md)")
driver_chart = obj({
  "global": free(), "install": t(B, "the Azure layout's condition on this chart"),
  "nameOverride": t([S, "null"]), "fullnameOverride": t([S, "null"]), "commonLabels": free(),
  "imagePullSecrets": arr(), "logVerbosity": t([I, S]), "logFormatJSON": t(B),
  "rbac": obj({"install": t(B), "pspEnabled": t(B, "PodSecurityPolicy left Kubernetes in 1.25: refused when true")}),
  "crds": obj({"install": t(B), "keep": t(B)}),
  "enableSecretRotation": t(B), "rotationPollInterval": t([S, "null"], "empty: the driver's default, 2m"),
  "syncSecret": obj({"enabled": t(B)}), "providerHealthCheck": t(B), "providerHealthCheckInterval": t([S, "null"]),
  "maxCallRecvMsgSize": t(I), "tokenRequests": arr(),
  "filteredWatchSecret": t(B, UNUSED + "the driver watches no Secrets"),
  "minimumProviderVersions": t([S, "null"], UNUSED + "providers are checked by their Version answer"),
  "livenessProbe": obj({"port": t(I, "the driver's /healthz port (linux.healthzPort)"), "logLevel": t(I, UNUSED + "no livenessprobe sidecar")}),
  "linux": linux_driver, "windows": windows, "provider": provider, "syncController": sync,
}, None)
driver_chart["$schema"] = "https://json-schema.org/draft-07/schema#"
driver_chart["title"] = "kvmount (the Secrets Store CSI driver chart's layout)"
linux_azure = obj({
  "enabled": t(B), "image": image(), "nodeSelector": free(), "tolerations": arr(), "resources": free(),
  "podLabels": free(), "podAnnotations": free(), "daemonsetAnnotations": free(), "priorityClassName": t([S, "null"]),
  "updateStrategy": free(), "privileged": t(B), "customUserAgent": t([S, "null"]), "healthzPort": t(I),
  "healthzPath": t(S), "healthzTimeout": t(S), "metricsPort": t(I), "volumes": arr(), "volumeMounts": arr(),
  "kubeletRootDir": t(S, UNUSED + "the provider needs only providersDir"), "providersDir": t(S), "affinity": free(),
  "dnsPolicy": t(S), "cacheTTL": t([S, "null"]), "env": arr(), "extraArgs": arr()})
PROXY = "the provider's proxy; " + UNUSED.strip(": ") + " unless isProxyEnabled is true"
azure_chart = obj({
  "global": free(), "nameOverride": t([S, "null"]), "fullnameOverride": t([S, "null"]), "imagePullSecrets": arr(),
  "logFormatJSON": t(B), "logVerbosity": t([I, S]), "enableArcExtension": t(B, "refused when true"),
  "Azure": obj({"proxySettings": obj({"isProxyEnabled": t(B), "httpProxy": t([S, "null"], PROXY), "httpsProxy": t([S, "null"], PROXY),
      "noProxy": t([S, "null"], PROXY), "proxyCert": t([S, "null"], "refused when set")})}),
  "linux": linux_azure, "windows": windows,
  "secrets-store-csi-driver": free("kvmount's driver chart, every value of upstream's driver chart (its own schema checks them)"),
  "rbac": obj({"install": t(B), "pspEnabled": t(B, "refused when true")}),
  "constructPEMChain": t(B), "writeCertAndKeyInSeparateFiles": t(B)})
azure_chart["$schema"] = "https://json-schema.org/draft-07/schema#"
azure_chart["title"] = "kvmount-azure (the Azure provider chart's layout)"
json.dump(driver_chart, open(sys.argv[1], "w"), indent=2); open(sys.argv[1], "a").write("\n")
json.dump(azure_chart, open(sys.argv[2], "w"), indent=2); open(sys.argv[2], "a").write("\n")
