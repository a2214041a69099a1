{{/*
Names, labels and shared pieces of the chart, in Bitnami's style (common.names.*,
common.labels.*) but without the `common` library chart: this chart has no dependencies, so it
installs offline and `helm lint` needs no repository.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "mysoulmate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: fullnameOverride, or `<release>-<chart>` (just `<release>`
when the release name already contains the chart name). 63 characters: a DNS label.
*/}}
{{- define "mysoulmate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* `<fullname>-<component>`, kept within 63 characters. */}}
{{- define "mysoulmate.componentName" -}}
{{- printf "%s-%s" (include "mysoulmate.fullname" .context | trunc (sub 62 (len .component) | int)) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "mysoulmate.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mysoulmate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels of every resource (Kubernetes' recommended labels plus commonLabels). */}}
{{- define "mysoulmate.labels" -}}
app.kubernetes.io/name: {{ include "mysoulmate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "mysoulmate.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mysoulmate
helm.sh/chart: {{ include "mysoulmate.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: pass (dict "context" $ "component" "api"). */}}
{{- define "mysoulmate.componentLabels" -}}
{{ include "mysoulmate.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Selector labels: fixed for the life of a release (a Deployment's selector is immutable), so no
version and no commonLabels here.
*/}}
{{- define "mysoulmate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mysoulmate.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* `  annotations:` of a resource's metadata, when commonAnnotations has any. */}}
{{- define "mysoulmate.annotations" -}}
{{- with .Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "mysoulmate.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* registry/repository@digest, or registry/repository:tag. */}}
{{- define "mysoulmate.image" -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repository := ternary (printf "%s/%s" $registry .Values.image.repository) .Values.image.repository (ne $registry "") -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (include "mysoulmate.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/* image.pullPolicy, else IfNotPresent for a digest (immutable) and Always for a tag. */}}
{{- define "mysoulmate.imagePullPolicy" -}}
{{- default (ternary "IfNotPresent" "Always" (ne .Values.image.digest "")) .Values.image.pullPolicy -}}
{{- end -}}

{{- define "mysoulmate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mysoulmate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mysoulmate.secretName" -}}
{{- default (printf "%s-secrets" (include "mysoulmate.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The settings every container gets, as NAME: "value" (README.md "Configuration"). One
definition for the ConfigMap, its checksum, and the migrations hook (which runs before the
ConfigMap exists, so it gets them inline).
*/}}
{{- define "mysoulmate.settings" -}}
{{- $c := .Values.config -}}
{{- $s := dict
  "STAGE" $c.stage
  "LOG_LEVEL" $c.logLevel
  "APP_VERSION" (include "mysoulmate.imageTag" .)
  "STORAGE_BACKEND" $c.storageBackend
  "QUEUE_BACKEND" $c.queueBackend
  "AWS_REGION" $c.awsRegion
  "RATE_LIMIT_STORE" $c.rateLimitStore
  "AUTH_MODE" $c.authMode
  "JWT_ISSUER" $c.jwtIssuer
  "JWT_AUDIENCE" $c.jwtAudience
  "DEFAULT_LOCALE" $c.defaultLocale
  "SUPPORTED_LOCALES" (join "," $c.supportedLocales)
  "SENTRY_ENVIRONMENT" (default $c.stage $c.sentryEnvironment)
  "SENTRY_TRACES_SAMPLE_RATE" (toString $c.sentryTracesSampleRate)
  "MIXPANEL_API_HOST" $c.mixpanelApiHost
  "DATA_DIR" "/data"
  "PORT" (toString .Values.api.containerPort)
  "WORKER_METRICS_PORT" (toString .Values.worker.metricsPort)
-}}
{{- if eq $c.storageBackend "postgres" }}{{ $_ := set $s "DATABASE_POOL_SIZE" (toString $c.databasePoolSize) }}{{ end -}}
{{- if eq $c.storageBackend "dynamodb" }}{{ $_ := set $s "EVENTS_TABLE" $c.eventsTable }}{{ end -}}
{{- if eq $c.queueBackend "rabbitmq" }}{{ $_ := set $s "RABBITMQ_QUEUE" $c.rabbitmqQueue }}{{ end -}}
{{- if eq $c.queueBackend "sqs" }}{{ $_ := set $s "EVENTS_QUEUE_URL" $c.eventsQueueUrl }}{{ end -}}
{{- with $c.eventsDlqUrl }}{{ $_ := set $s "EVENTS_DLQ_URL" . }}{{ end -}}
{{- with $c.jwksUrl }}{{ $_ := set $s "JWKS_URL" . }}{{ end -}}
{{- with $c.corsAllowOrigins }}{{ $_ := set $s "CORS_ALLOW_ORIGINS" (join "," .) }}{{ end -}}
{{- with $c.apiBaseUrl }}{{ $_ := set $s "API_BASE_URL" . }}{{ end -}}
{{- with $c.supportEmail }}{{ $_ := set $s "SUPPORT_EMAIL" . }}{{ end -}}
{{- with $c.gaMeasurementId }}{{ $_ := set $s "GA_MEASUREMENT_ID" . }}{{ end -}}
{{- with $c.mediaOriginalsBucket }}{{ $_ := set $s "MEDIA_ORIGINALS_BUCKET" . }}{{ end -}}
{{- with $c.mediaDerivativesBucket }}{{ $_ := set $s "MEDIA_DERIVATIVES_BUCKET" . }}{{ end -}}
{{- if $c.mediaRequireSigned }}{{ $_ := set $s "MEDIA_REQUIRE_SIGNED" "true" }}{{ end -}}
{{- $_ := set $s "PERF_REGRESSION_THRESHOLD" (toString $c.perfRegressionThreshold) -}}
{{- toYaml (mergeOverwrite $s $c.extraEnv) -}}
{{- end -}}

{{/* Pod-level security context: non-root with the image's uid, RuntimeDefault seccomp. */}}
{{- define "mysoulmate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: {{ .Values.podSecurityContext.fsGroupChangePolicy }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container-level security context, the same for every container of the chart and not
configurable: read-only root file system (writes go to the /tmp and /data emptyDirs), no
privilege escalation, no capabilities at all.
*/}}
{{- define "mysoulmate.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* imagePullSecrets from global.imagePullSecrets. */}}
{{- define "mysoulmate.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The writable paths of the read-only root file system. */}}
{{- define "mysoulmate.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.dataVolume.sizeLimit }}
{{- end -}}

{{- define "mysoulmate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- end -}}

{{/* Settings from the ConfigMap, credentials from the existing Secret. */}}
{{- define "mysoulmate.envFrom" -}}
- configMapRef:
    name: {{ include "mysoulmate.fullname" . }}
- secretRef:
    name: {{ include "mysoulmate.secretName" . }}
{{- end -}}

{{/* Pod annotations that roll the pods when the settings change. */}}
{{- define "mysoulmate.checksumAnnotations" -}}
checksum/config: {{ include "mysoulmate.settings" . | sha256sum }}
{{- end -}}

{{/*
Spread a component's pods across zones and nodes: pass (dict "context" $ "component" "api").
*/}}
{{- define "mysoulmate.topologySpreadConstraints" -}}
{{- $spread := .context.Values.topologySpread -}}
{{- if $spread.enabled }}
topologySpreadConstraints:
  {{- range $key, $when := dict "topology.kubernetes.io/zone" $spread.zoneWhenUnsatisfiable "kubernetes.io/hostname" $spread.nodeWhenUnsatisfiable }}
  - maxSkew: {{ $spread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $when }}
    labelSelector:
      matchLabels:
        {{- include "mysoulmate.selectorLabels" (dict "context" $.context "component" $.component) | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
{{- end }}
{{- end -}}

{{/* nodeSelector, tolerations, affinity and priorityClassName of the api and worker pods. */}}
{{- define "mysoulmate.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/*
Values that are valid one by one (values.schema.json) but impossible together. Called from
NOTES.txt, so `helm install`, `helm template` and `helm lint` stop with the message.
*/}}
{{- define "mysoulmate.validateValues" -}}
{{- $c := .Values.config -}}
{{- $errors := list -}}
{{- range $name, $a := dict "api.autoscaling" .Values.api.autoscaling "worker.autoscaling" .Values.worker.autoscaling "worker.keda" .Values.worker.keda -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- $errors = append $errors (printf "%s.minReplicas (%v) is greater than %s.maxReplicas (%v)" $name $a.minReplicas $name $a.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- if eq $c.queueBackend "local" -}}
{{- if or .Values.api.autoscaling.enabled (gt (int .Values.api.replicaCount) 1) -}}
{{- $errors = append $errors "config.queueBackend=local is a SQLite file of one process: set api.replicaCount=1 and api.autoscaling.enabled=false, or share a broker (queueBackend=rabbitmq or sqs)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.worker.enabled (ne $c.queueBackend "rabbitmq") -}}
{{- $errors = append $errors (printf "worker.enabled=true needs config.queueBackend=rabbitmq (`mysoulmate worker` consumes RabbitMQ; with %s set worker.enabled=false: %s)" $c.queueBackend (ternary "the consumer Lambda drains SQS" "the api drains the local queue itself" (eq $c.queueBackend "sqs"))) -}}
{{- end -}}
{{- if and .Values.worker.keda.enabled .Values.worker.autoscaling.enabled -}}
{{- $errors = append $errors "worker.keda.enabled=true and worker.autoscaling.enabled=true: KEDA creates its own HPA and two would fight over the replicas; set worker.autoscaling.enabled=false" -}}
{{- end -}}
{{- if and (eq $c.queueBackend "sqs") (not $c.eventsQueueUrl) -}}
{{- $errors = append $errors "config.queueBackend=sqs needs config.eventsQueueUrl (https://sqs.<region>.amazonaws.com/<account>/<queue>)" -}}
{{- end -}}
{{- if ge (int .Values.api.preStopSleepSeconds) (int .Values.api.terminationGracePeriodSeconds) -}}
{{- $errors = append $errors (printf "api.preStopSleepSeconds (%v) must be shorter than api.terminationGracePeriodSeconds (%v), or in-flight requests are killed" .Values.api.preStopSleepSeconds .Values.api.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- if and .Values.ingress.enabled .Values.ingress.tls (not .Values.ingress.clusterIssuer) -}}
{{- $errors = append $errors "ingress.tls=true needs ingress.clusterIssuer (the cert-manager ClusterIssuer that issues the certificate)" -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
