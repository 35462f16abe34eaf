{{/* The name of every object: the release's, or release-chart when they differ. */}}
{{- define "agentauthz.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agentauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agentauthz.labels" -}}
{{ include "agentauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The agentauthz image: repository@digest, or repository:tag. */}}
{{- define "agentauthz.image" -}}
{{- $repo := required "image.repository: where the agentauthz image is (the release builds it from Containerfile)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The policy's ConfigMap: the one made from policy.files, or policy.existingConfigMap. */}}
{{- define "agentauthz.policyConfigMap" -}}
{{- if and .Values.policy.files .Values.policy.existingConfigMap -}}
{{- fail "policy: give policy.files or policy.existingConfigMap, not both" -}}
{{- else if .Values.policy.files -}}
{{- printf "%s-policy" (include "agentauthz.fullname" .) -}}
{{- else if .Values.policy.existingConfigMap -}}
{{- .Values.policy.existingConfigMap -}}
{{- else -}}
{{- fail "policy: give the policy, as policy.files or policy.existingConfigMap" -}}
{{- end -}}
{{- end -}}

{{/* Refuses more than one pod with the embedded approval store, unless acknowledged. */}}
{{- define "agentauthz.checkApprovals" -}}
{{- $a := .Values.approvals -}}
{{- if and (eq $a.store "postgres") (not $a.postgresDSN) -}}
{{- fail "approvals.store postgres needs approvals.postgresDSN" -}}
{{- end -}}
{{- if and (eq $a.store "embedded") $a.postgresDSN -}}
{{- fail "approvals.postgresDSN is set but approvals.store is embedded: set approvals.store to postgres" -}}
{{- end -}}
{{- if and (gt (int .replicas) 1) (eq $a.store "embedded") (not $a.embeddedWithReplicas) -}}
{{- fail "more than one pod with the embedded approval store: an approval granted on one pod would be unknown to the others. Set approvals.store to postgres (with approvals.postgresDSN), or, if the policy holds no request for approval, approvals.embeddedWithReplicas to true" -}}
{{- end -}}
{{- end -}}

{{/* serve's flags common to both modes. */}}
{{- define "agentauthz.commonArgs" -}}
- --policy=/etc/agentauthz/policy
- --data-dir=/var/lib/agentauthz
{{- if eq .Values.approvals.store "postgres" }}
- --approval-store={{ .Values.approvals.postgresDSN }}
{{- end }}
{{- if .Values.approvals.approversSecret }}
- --approvers=/etc/agentauthz/approvers/approvers.yaml
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Volumes every agentauthz pod has. */}}
{{- define "agentauthz.commonVolumes" -}}
- name: policy
  configMap:
    name: {{ include "agentauthz.policyConfigMap" . }}
- name: data
  emptyDir: {}
{{- if .Values.approvals.approversSecret }}
- name: approvers
  secret:
    secretName: {{ .Values.approvals.approversSecret }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Their mounts in the agentauthz container. The policy is the whole volume, never a subPath:
a subPath mount would not see the kubelet's updates, and the policy would not reload. */}}
{{- define "agentauthz.commonMounts" -}}
- name: policy
  mountPath: /etc/agentauthz/policy
  readOnly: true
- name: data
  mountPath: /var/lib/agentauthz
{{- if .Values.approvals.approversSecret }}
- name: approvers
  mountPath: /etc/agentauthz/approvers
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The agentauthz container's security context: no privileges, nothing writable but its
volumes, distroless's nonroot user. */}}
{{- define "agentauthz.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}
