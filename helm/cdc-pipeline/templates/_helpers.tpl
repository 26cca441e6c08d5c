{{/* Names, labels and shared pieces of the cdc-pipeline chart. */}}

{{- define "cdc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdc.fullname" -}}
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

{{/* (dict "root" $ "component" "masker") -> <fullname>-masker */}}
{{- define "cdc.component.name" -}}
{{- printf "%s-%s" (include "cdc.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cdc-pipeline
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "masker") */}}
{{- define "cdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdc.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cdc.componentLabels" -}}
{{ include "cdc.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cdc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cdc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rendered pipeline.yaml: .Values.config without the blocks of sinks that are not enabled. */}}
{{- define "cdc.pipelineConfig" -}}
{{- $config := deepCopy .Values.config -}}
{{- $sinks := dict -}}
{{- range $name, $sink := .Values.sinks -}}
{{- if $sink.enabled -}}
{{- $_ := set $sinks $name (get ($config.sinks | default dict) $name | default dict) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "sinks" $sinks -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Port of an admin listen_addr "ip:port". */}}
{{- define "cdc.port" -}}
{{- regexFind "[0-9]+$" . -}}
{{- end -}}

{{/*
Grace period of a component: its drain_timeout_secs (default 30) plus .Values.terminationGraceMarginSecs, so
Kubernetes never SIGKILLs a service that is still draining. (dict "root" $ "drain" <drain_timeout_secs or nil>)
*/}}
{{- define "cdc.terminationGrace" -}}
{{- add (default 30 .drain) .root.Values.terminationGraceMarginSecs -}}
{{- end -}}

{{/*
Pod annotations of a component: config checksums (pods roll when pipeline.yaml or the policy changes), the Vault
Agent injector annotations when enabled, and the component's own podAnnotations. (dict "root" $ "values" <vals>)
*/}}
{{- define "cdc.podAnnotations" -}}
checksum/config: {{ include "cdc.pipelineConfig" .root | sha256sum }}
{{- if .root.Values.vaultAgent.enabled }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ .root.Values.vaultAgent.role | quote }}
{{- if .root.Values.vaultAgent.injectToken }}
vault.hashicorp.com/agent-inject-token: "true"
{{- end }}
{{- range $file, $secret := .values.vaultSecrets }}
vault.hashicorp.com/agent-inject-secret-{{ $file }}: {{ $secret.path | quote }}
{{- with $secret.template }}
vault.hashicorp.com/agent-inject-template-{{ $file }}: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The container of one pipeline service. (dict "root" $ "component" "masker" "values" <component values>
"port" <admin port> "extraMounts" <list> "extraEnv" <list>)
*/}}
{{- define "cdc.container" -}}
- name: {{ .component }}
  image: {{ include "cdc.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["/usr/local/bin/{{ .component }}", "--config", "/etc/cdc/pipeline.yaml"]
  env:
    - name: CDC__TELEMETRY__SERVICE_NAME
      value: {{ .component | quote }}
    - name: CDC_INSTANCE_ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- with .extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if and .values.secret .values.secret.enabled }}
  envFrom:
    - secretRef:
        name: {{ include "cdc.secretName" (dict "root" .root "component" .component "secret" .values.secret) }}
  {{- end }}
  ports:
    - name: admin
      containerPort: {{ .port }}
      protocol: TCP
  startupProbe:
    httpGet: {path: /livez, port: admin}
    periodSeconds: 2
    failureThreshold: 60
  livenessProbe:
    httpGet: {path: /livez, port: admin}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 6
  readinessProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 3
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml (.values.containerSecurityContext | default .root.Values.containerSecurityContext) | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/cdc/pipeline.yaml
      subPath: pipeline.yaml
      readOnly: true
    {{- with .extraMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .root.Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* Name of a component's Secret: (dict "root" $ "component" "masker" "secret" <values.secret>) */}}
{{- define "cdc.secretName" -}}
{{- .secret.name | default (include "cdc.component.name" (dict "root" .root "component" .component)) -}}
{{- end -}}
