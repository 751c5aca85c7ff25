{{/* Names and labels. */}}
{{- define "msgrouter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "msgrouter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: include "msgrouter.selector" (list . "router") */}}
{{- define "msgrouter.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "msgrouter.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "msgrouter.secretName" -}}
{{- if .Values.secrets.create -}}{{ include "msgrouter.fullname" . }}{{- else -}}{{ .Values.secrets.name }}{{- end -}}
{{- end -}}

{{/* An env entry from the Secret; optional keys may be absent. */}}
{{- define "msgrouter.secretEnv" -}}
{{- $ := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "msgrouter.secretName" $ }}
      key: {{ index . 1 }}
      optional: {{ index . 2 }}
{{- end -}}

{{- define "msgrouter.commonEnv" -}}
- name: LOG_FORMAT
  value: json
- name: SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int .Values.shutdownTimeoutSeconds) | quote }}
{{- end -}}

{{- define "msgrouter.natsEnv" -}}
- name: NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: STREAM_REPLICAS
  value: {{ .Values.stream.replicas | quote }}
- name: STREAM_MAX_AGE
  value: {{ .Values.stream.maxAge | quote }}
- name: STREAM_MAX_BYTES
  value: {{ .Values.stream.maxBytes | quote }}
{{- end -}}

{{- define "msgrouter.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Liveness, readiness and start-up probes on /health/live and /health/ready. */}}
{{- define "msgrouter.probes" -}}
startupProbe:
  httpGet: {path: /health/live, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /health/live, port: http}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /health/ready, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{- define "msgrouter.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
{{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ add .Values.shutdownTimeoutSeconds .Values.gracePeriodMarginSeconds }}
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
{{- end -}}

{{/* NetworkPolicy egress rules. */}}
{{- define "msgrouter.egressDNS" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
{{- define "msgrouter.egressNATS" -}}
- to:
    - podSelector:
        matchLabels:
          {{- toYaml .Values.nats.podSelector | nindent 10 }}
      namespaceSelector: {}
  ports:
    - {port: {{ .Values.nats.port }}, protocol: TCP}
{{- end -}}
{{- define "msgrouter.egressPostgres" -}}
- ports:
    - {port: {{ .Values.postgres.port }}, protocol: TCP}
  {{- if .Values.postgres.podSelector }}
  to:
    - podSelector:
        matchLabels:
          {{- toYaml .Values.postgres.podSelector | nindent 10 }}
      namespaceSelector: {}
  {{- end }}
{{- end -}}
