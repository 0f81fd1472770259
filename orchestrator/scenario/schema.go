package scenario

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

// SchemaID is the $id of the published schema.
const SchemaID = "https://canarylab.dev/schemas/scenario-v1alpha1.json"

// shortForms are the types that read a short string form as well as their
// object form (their UnmarshalJSON): the schema allows both.
var shortForms = map[reflect.Type]*jsonschema.Schema{
	reflect.TypeFor[behavior.Latency]():   {Type: "string", Description: `a distribution, such as "lognormal(20ms, 250ms)", "uniform(10ms, 50ms)" or "30ms"`},
	reflect.TypeFor[behavior.Errors]():    {Type: "string", Description: `an error mix, such as "503:0.1" or "500:0.02,503:0.01"`},
	reflect.TypeFor[behavior.Faults]():    {Type: "string", Description: `connection faults, such as "reset:0.01,hang:0.001"`},
	reflect.TypeFor[behavior.FaultSpec](): {Type: "number", Minimum: json.Number("0"), Maximum: json.Number("1"), Description: "the fault's rate, from 0 to 1"},
}

// Schema returns the JSON Schema (draft 2020-12) of the scenario format,
// generated from the Go types the parser decodes into, so the two cannot
// drift. Semantic rules (one of stepWeight, stepWeights or iterations;
// templateRef names a template) are the parser's: validate checks them.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{ExpandedStruct: true, Mapper: mapType}
	s := r.Reflect(&Scenario{})
	s.ID = SchemaID
	s.Title = "canarylab scenario"
	s.Description = "A canary analysis to run (Flagger's spec.analysis and MetricTemplates), what the stable and canary versions do, the load, and the expected outcome."
	if p, ok := s.Properties.Get("apiVersion"); ok {
		p.Const = APIVersion
	}
	if p, ok := s.Properties.Get("kind"); ok {
		p.Const = Kind
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the scenario schema: %w", err)
	}
	return data, nil
}

func mapType(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[behavior.Duration]():
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, Description: `a duration with a unit, such as "250ms" or "1m30s"`},
			{Type: "integer", Const: 0},
		}}
	case reflect.TypeFor[plan.Status]():
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: json.Number("100"), Maximum: json.Number("599")},
			{Type: "string", Pattern: `^[1-5]xx$`},
		}}
	case reflect.TypeFor[plan.Wait]():
		return &jsonschema.Schema{Type: "string", Description: `the wait between tasks, such as "constant(1s)", "between(0.5s, 2s)", "constant_throughput(2)" or "constant_pacing(1s)"`}
	}
	short, ok := shortForms[t]
	if !ok {
		return nil
	}
	// The object form, reflected without this mapping (which would come
	// back here) but with the others.
	sub := &jsonschema.Reflector{ExpandedStruct: true, DoNotReference: true, Mapper: func(u reflect.Type) *jsonschema.Schema {
		if u == t {
			return nil
		}
		return mapType(u)
	}}
	obj := sub.ReflectFromType(t)
	obj.Version, obj.ID = "", ""
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{short, obj}}
}
