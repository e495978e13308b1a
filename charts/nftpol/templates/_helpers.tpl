{{/*
The objects' names. With the release name nftpol (as in the docs) every name
equals deploy/install.yaml's: nftpol, nftpol-metrics, nftpol-critical-pods.
*/}}
{{- define "nftpol.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nftpol.fullname" -}}
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

{{/* The label every object carries, and the pods' selector. */}}
{{- define "nftpol.labels" -}}
app.kubernetes.io/name: {{ include "nftpol.name" . }}
{{- end }}

{{/* The port of agent.listen (ADDR:PORT, [IPv6]:PORT). */}}
{{- define "nftpol.port" -}}
{{- $port := regexReplaceAll "^.*:" (toString .Values.agent.listen) "" }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "agent.listen must be ADDRESS:PORT, not %q" (toString .Values.agent.listen)) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
The arguments of `nftpol run` from .Values.agent, as a JSON list: a bool
gives the switch when true; "" or null gives nothing (the binary's default);
anything else gives --flag=value (whole numbers without an exponent: Helm
reads YAML numbers as floats). failClosedNewPods and revokeEstablished
give --fail-closed-new-pods=true|false and --revoke-established=true|false; podCidr (one or a list) one --pod-cidr
each. Then .Values.extraArgs.
*/}}
{{- define "nftpol.args" -}}
{{- $a := .Values.agent }}
{{- $args := list "run" }}
{{- range $f := list (list "--listen" $a.listen) (list "--nft" $a.nft) (list "--kubeconfig" $a.kubeconfig) (list "--context" $a.context) (list "--min-interval" $a.minInterval) (list "--max-delay" $a.maxDelay) (list "--resync" $a.resync) (list "--nft-timeout" $a.nftTimeout) (list "--element-updates" $a.elementUpdates) (list "--liveness-stall" $a.livenessStall) (list "--log-json" $a.logJson) (list "--log-drops" $a.logDrops) (list "--log-group" $a.logGroup) (list "--log-rate" $a.logRate) (list "--log-burst" $a.logBurst) (list "--status-interval" $a.statusInterval) (list "--status-namespace" $a.statusNamespace) }}
{{- $flag := index $f 0 }}
{{- $v := index $f 1 }}
{{- if kindIs "bool" $v }}
{{- if $v }}
{{- $args = append $args $flag }}
{{- end }}
{{- else if not (or (kindIs "invalid" $v) (eq (toString $v) "")) }}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) }}
{{- $v = int64 $v }}
{{- end }}
{{- $args = append $args (printf "%s=%v" $flag $v) }}
{{- end }}
{{- end }}
{{- /* A switch with a value (false must reach the binary too), and a
repeatable flag (one CIDR or a list: one flag each). */}}
{{- range $f := list (list "--fail-closed-new-pods" $a.failClosedNewPods) (list "--revoke-established" $a.revokeEstablished) (list "--pod-cidr" $a.podCidr) }}
{{- $vs := index $f 1 }}
{{- if not (kindIs "slice" $vs) }}
{{- $vs = list $vs }}
{{- end }}
{{- range $v := $vs }}
{{- if not (or (kindIs "invalid" $v) (eq (toString $v) "")) }}
{{- $args = append $args (printf "%s=%v" (index $f 0) $v) }}
{{- end }}
{{- end }}
{{- end }}
{{- concat $args .Values.extraArgs | toJson }}
{{- end }}
