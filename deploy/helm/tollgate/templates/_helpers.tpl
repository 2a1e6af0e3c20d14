{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tollgate.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The metrics port, from config.metrics.listen in any form Go's net.Listen
takes (":9101", "0.0.0.0:9101", "[::]:9101"); empty when metrics are off
or served on the token port.
*/}}
{{- define "tollgate.metricsPort" -}}
{{- with .Values.config.metrics -}}{{- if ne .enabled false -}}{{- with .listen -}}
{{- $port := splitList ":" . | last | atoi -}}
{{- if not $port -}}{{- fail (printf "config.metrics.listen %q names no port" .) -}}{{- end -}}
{{- $port -}}
{{- end -}}{{- end -}}{{- end -}}
{{- end -}}

{{/*
Values that would deploy something that cannot work as configured.
*/}}
{{- define "tollgate.validate" -}}
{{- if and .Values.redisPassword.existingSecret (not .Values.config.redis) -}}
{{- fail "redisPassword.existingSecret is set but config.redis is not: set config.redis.addr, or drop the password" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.config.redis) -}}
{{- fail (printf "replicaCount is %d but config.redis is not set: without shared state each replica keeps its own lockouts and `token revoke` has no shared place to write; set config.redis.addr or replicaCount=1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- include "tollgate.validatePolicy" . -}}
{{- end -}}

{{/*
The ConfigMap holding the policy (policy.files or policy.existingConfigMap),
empty when the policy comes from config.policy.source alone.
*/}}
{{- define "tollgate.policyConfigMap" -}}
{{- if .Values.policy.files -}}{{- printf "%s-policy" (include "tollgate.fullname" .) -}}{{- else -}}{{- .Values.policy.existingConfigMap -}}{{- end -}}
{{- end -}}

{{- define "tollgate.policyDir" -}}/etc/tollgate/policy{{- end -}}

{{/*
A policy ConfigMap is mounted at tollgate.policyDir: config.policy.source
must name that directory, and nothing of a bundle URL may go with it.
*/}}
{{- define "tollgate.validatePolicy" -}}
{{- $dir := include "tollgate.policyDir" . -}}
{{- $source := .Values.config.policy.source | default "" -}}
{{- if and .Values.policy.files .Values.policy.existingConfigMap -}}
{{- fail "policy.files and policy.existingConfigMap are both set: the policy comes from one ConfigMap, set only one of them" -}}
{{- end -}}
{{- if include "tollgate.policyConfigMap" . -}}
{{- if ne (trimSuffix "/" $source) $dir -}}
{{- fail (printf "the policy ConfigMap is mounted at %s but config.policy.source is %q: set config.policy.source=%s, or drop policy.files/policy.existingConfigMap to use that source" $dir $source $dir) -}}
{{- end -}}
{{- if .Values.bundleToken.existingSecret -}}
{{- fail "bundleToken.existingSecret is set with a policy ConfigMap: the token is for a bundle URL; drop one of them" -}}
{{- end -}}
{{- else if eq (trimSuffix "/" $source) $dir -}}
{{- fail (printf "config.policy.source is %s but no policy is mounted there: set policy.files or policy.existingConfigMap" $source) -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "tollgate.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}
