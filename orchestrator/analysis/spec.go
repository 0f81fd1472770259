package analysis

import (
	"time"
)

// Spec is Flagger's Canary spec.analysis (flagger.app/v1beta1
// CanaryAnalysis), with Flagger's field names and meanings, so a user can
// paste it from a real Canary and back.
type Spec struct {
	// Interval is the analysis tick period, e.g. "1m" (default 60s; under
	// 10s counts as 10s, as in Flagger).
	Interval string `json:"interval,omitempty"`
	// Threshold is how many failed checks roll the canary back (≤ 0: 1).
	Threshold int `json:"threshold,omitempty"`
	// MaxWeight is the canary weight at which promotion starts (default
	// 100; the last of StepWeights when they are set).
	MaxWeight int `json:"maxWeight,omitempty"`
	// StepWeight is the linear weight step.
	StepWeight int `json:"stepWeight,omitempty"`
	// StepWeights is an explicit ladder, used when StepWeight is 0.
	StepWeights []int `json:"stepWeights,omitempty"`
	// StepWeightPromotion is the primary's weight step at promotion (0:
	// all traffic at once).
	StepWeightPromotion int `json:"stepWeightPromotion,omitempty"`
	// Iterations selects blue/green (no Match) or A/B testing (with
	// Match) with that many analysed iterations.
	Iterations int `json:"iterations,omitempty"`
	// Mirror adds a mirror-only step before the first weight step
	// (canary) or mirrors during the iterations (blue/green).
	Mirror bool `json:"mirror,omitempty"`
	// MirrorWeight is Istio's mirrorPercentage, when > 0.
	MirrorWeight int `json:"mirrorWeight,omitempty"`
	// PrimaryReadyThreshold and CanaryReadyThreshold are the percentages
	// of updated replicas that must be available (default 100).
	PrimaryReadyThreshold *int `json:"primaryReadyThreshold,omitempty"`
	CanaryReadyThreshold  *int `json:"canaryReadyThreshold,omitempty"`
	// Match routes matching requests to the canary (A/B testing).
	Match []HTTPMatchRequest `json:"match,omitempty"`
	// Metrics are the checks run on every analysis tick.
	Metrics []Metric `json:"metrics,omitempty"`
	// Webhooks are the hooks (gates, load, rollback, events).
	Webhooks []Webhook `json:"webhooks,omitempty"`
	// Alerts are accepted as in Flagger; no alert provider is called.
	Alerts []Alert `json:"alerts,omitempty"`
	// SessionAffinity is accepted as in Flagger; sticky routes are not
	// emulated.
	SessionAffinity *SessionAffinity `json:"sessionAffinity,omitempty"`
}

// Metric is Flagger's CanaryMetric.
type Metric struct {
	// Name; request-success-rate and request-duration are the builtin
	// checks.
	Name string `json:"name"`
	// Interval is the PromQL window, {{ interval }} (default 1m for the
	// builtin and inline checks only; empty for a template's).
	Interval string `json:"interval,omitempty"`
	// Threshold is the deprecated single bound, used when ThresholdRange
	// is nil.
	Threshold float64 `json:"threshold,omitempty"`
	// ThresholdRange bounds the value, inclusive (milliseconds for
	// request-duration).
	ThresholdRange *ThresholdRange `json:"thresholdRange,omitempty"`
	// Query is the deprecated inline PromQL.
	Query string `json:"query,omitempty"`
	// TemplateRef names a MetricTemplate.
	TemplateRef *TemplateRef `json:"templateRef,omitempty"`
	// TemplateVariables are {{ variables.key }} in the template.
	TemplateVariables map[string]string `json:"templateVariables,omitempty"`
}

// ThresholdRange is Flagger's CanaryThresholdRange.
type ThresholdRange struct {
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// TemplateRef is Flagger's CrossNamespaceObjectReference to a
// MetricTemplate.
type TemplateRef struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// HookType is a webhook's type.
type HookType string

// Flagger's webhook types.
const (
	HookRollout                HookType = "rollout"
	HookPreRollout             HookType = "pre-rollout"
	HookPostRollout            HookType = "post-rollout"
	HookConfirmRollout         HookType = "confirm-rollout"
	HookConfirmPromotion       HookType = "confirm-promotion"
	HookEvent                  HookType = "event"
	HookRollback               HookType = "rollback"
	HookConfirmTrafficIncrease HookType = "confirm-traffic-increase"
)

// HookTypes lists the valid webhook types ("" means rollout).
var HookTypes = []HookType{HookRollout, HookPreRollout, HookPostRollout, HookConfirmRollout,
	HookConfirmPromotion, HookEvent, HookRollback, HookConfirmTrafficIncrease}

// Webhook is Flagger's CanaryWebhook.
type Webhook struct {
	Type       HookType          `json:"type,omitempty"`
	Name       string            `json:"name"`
	URL        string            `json:"url"`
	Timeout    string            `json:"timeout,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Retries    int               `json:"retries,omitempty"`
	MuteAlert  bool              `json:"muteAlert,omitempty"`
	DisableTLS bool              `json:"disableTLS,omitempty"`
}

// Alert is Flagger's CanaryAlert.
type Alert struct {
	Name        string      `json:"name"`
	Severity    string      `json:"severity,omitempty"`
	ProviderRef TemplateRef `json:"providerRef"`
}

// SessionAffinity is Flagger's SessionAffinity.
type SessionAffinity struct {
	CookieName        string `json:"cookieName,omitempty"`
	PrimaryCookieName string `json:"primaryCookieName,omitempty"`
	MaxAge            int    `json:"maxAge,omitempty"`
	Domain            string `json:"domain,omitempty"`
	Path              string `json:"path,omitempty"`
}

// HTTPMatchRequest is Istio's HTTPMatchRequest (the fields a router on
// this machine can match).
type HTTPMatchRequest struct {
	Name           string                 `json:"name,omitempty"`
	URI            *StringMatch           `json:"uri,omitempty"`
	Scheme         *StringMatch           `json:"scheme,omitempty"`
	Method         *StringMatch           `json:"method,omitempty"`
	Authority      *StringMatch           `json:"authority,omitempty"`
	Headers        map[string]StringMatch `json:"headers,omitempty"`
	QueryParams    map[string]StringMatch `json:"queryParams,omitempty"`
	WithoutHeaders map[string]StringMatch `json:"withoutHeaders,omitempty"`
	IgnoreURICase  bool                   `json:"ignoreUriCase,omitempty"`
	SourceLabels   map[string]string      `json:"sourceLabels,omitempty"`
	Gateways       []string               `json:"gateways,omitempty"`
	Port           uint32                 `json:"port,omitempty"`
	SourceNS       string                 `json:"sourceNamespace,omitempty"`
	StatPrefix     string                 `json:"statPrefix,omitempty"`
}

// StringMatch is Istio's StringMatch: one of exact, prefix, regex (RE2,
// fully anchored as Envoy does).
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// MetricTemplate is Flagger's MetricTemplate object.
type MetricTemplate struct {
	APIVersion string             `json:"apiVersion,omitempty"`
	Kind       string             `json:"kind,omitempty"`
	Metadata   ObjectMeta         `json:"metadata"`
	Spec       MetricTemplateSpec `json:"spec"`
}

// ObjectMeta is the part of Kubernetes' metadata a template needs.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// MetricTemplateSpec is Flagger's MetricTemplateSpec.
type MetricTemplateSpec struct {
	Provider MetricProvider `json:"provider"`
	Query    string         `json:"query"`
}

// MetricProvider is Flagger's MetricTemplateProvider. Only prometheus is
// evaluated here (the embedded engine is Prometheus).
type MetricProvider struct {
	Type               string            `json:"type"`
	Address            string            `json:"address,omitempty"`
	SecretRef          *LocalRef         `json:"secretRef,omitempty"`
	Headers            map[string]string `json:"headers,omitempty"`
	InsecureSkipVerify bool              `json:"insecureSkipVerify,omitempty"`
	Region             string            `json:"region,omitempty"`
}

// LocalRef names an object in the same namespace.
type LocalRef struct {
	Name string `json:"name"`
}

// Defaults, as Flagger's canary.go has them.
const (
	DefaultInterval       = 60 * time.Second
	MinInterval           = 10 * time.Second
	DefaultMetricInterval = "1m"
	DefaultWebhookTimeout = 10 * time.Second
)
