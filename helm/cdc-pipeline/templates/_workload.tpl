{{/*
Service, HorizontalPodAutoscaler and PodDisruptionBudget of a Deployment component.
(dict "root" $ "component" <name> "values" <component values> "port" <admin port> "metric" <backlog metric>)
*/}}
{{- define "cdc.workloadExtras" -}}
{{- $root := .root -}}
{{- $name := include "cdc.component.name" (dict "root" $root "component" .component) -}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdc.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
    cdc-pipeline.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "cdc.selectorLabels" (dict "root" $root "component" .component) | nindent 4 }}
  ports:
    - name: admin
      port: {{ .port }}
      targetPort: admin
      protocol: TCP
{{- if .values.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdc.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ .values.autoscaling.minReplicas }}
  maxReplicas: {{ .values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .values.autoscaling.targetCPUUtilizationPercentage }}
    {{- if .values.autoscaling.backlog.enabled }}
    # Backlog per pod (high watermark - committed offset of the partitions it owns), served to the HPA by
    # prometheus-adapter as a Pods metric; see docs/scaling.md for the adapter rule.
    - type: Pods
      pods:
        metric:
          name: {{ .metric }}
        target:
          type: AverageValue
          averageValue: {{ .values.autoscaling.backlog.averageValue | quote }}
    {{- end }}
  behavior:
    scaleDown:
      # Every scale-down rebalances the consumer group; do it slowly.
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 120
{{- end }}
{{- if .values.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdc.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "cdc.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}
