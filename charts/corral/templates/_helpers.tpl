{{/* Names and labels shared by every template. */}}

{{- define "corral.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "corral.selectorLabels" -}}
app.kubernetes.io/name: corral-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "corral.labels" -}}
{{ include "corral.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: corral
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "corral.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "corral.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "corral.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "corral.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (default .Chart.AppVersion .Values.workerImage.tag) -}}
{{- end -}}

{{/* The Lease the operator replicas elect their leader with. */}}
{{- define "corral.leaseName" -}}
{{- printf "%s-leader" (include "corral.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's metrics Service (a DNS label: at most 63 characters as a
whole, so the suffix is added before truncating) and its scrape job. */}}
{{- define "corral.metricsServiceName" -}}
{{- printf "%s-metrics" (include "corral.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* PromQL label matchers selecting the operator's series in the alerts. */}}
{{- define "corral.operatorSelector" -}}
{{- default (printf "job=%q" (include "corral.metricsServiceName" .)) .Values.monitoring.rules.operatorSelector -}}
{{- end -}}

{{/* The web dashboard's labels (templates/web-dashboard.yaml): its own name,
so the operator's selector never matches its pods. */}}
{{- define "corral.dashboardSelectorLabels" -}}
app.kubernetes.io/name: corral-dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "corral.dashboardLabels" -}}
{{ include "corral.dashboardSelectorLabels" . }}
app.kubernetes.io/component: dashboard
app.kubernetes.io/part-of: corral
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
