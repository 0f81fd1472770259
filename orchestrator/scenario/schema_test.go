package scenario

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatalf("the published schema does not compile: %v", err)
	}
	return sch
}

func validateYAML(t *testing.T, sch *jsonschema.Schema, doc string) error {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(v)
}

// The schema accepts what the parser accepts (short and object forms) and
// rejects unknown fields and wrong types, as editors will show.
func TestSchemaAgreesWithTheParser(t *testing.T) {
	sch := compileSchema(t)
	for _, tc := range []struct {
		name string
		doc  string
		ok   bool
	}{
		{"valid, short forms", validDoc, true},
		{"valid, object forms", strings.Replace(validDoc, `latency: lognormal(20ms, 80ms)`, "latency: {lognormal: {median: 20ms, p99: 80ms}}", 1), true},
		{"unknown field", strings.Replace(validDoc, "stepWeight: 10", "stepWeigth: 10", 1), false},
		{"wrong type", strings.Replace(validDoc, "min: 99", "min: high", 1), false},
		{"wrong apiVersion", strings.Replace(validDoc, "canarylab.dev/v1alpha1", "v1", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateYAML(t, sch, tc.doc)
			if (err == nil) != tc.ok {
				t.Errorf("schema validation: %v, want ok=%v", err, tc.ok)
			}
			_, perr := Parse([]byte(tc.doc))
			if (perr == nil) != tc.ok {
				t.Errorf("parser: %v, want ok=%v", perr, tc.ok)
			}
		})
	}
	var m map[string]any
	data, _ := Schema()
	if err := json.Unmarshal(data, &m); err != nil || m["$id"] != SchemaID {
		t.Errorf("schema $id %v (%v)", m["$id"], err)
	}
}

// docs/scenario.schema.json is the published schema: it must be what
// Schema generates (make schema writes it).
func TestPublishedSchemaIsCurrent(t *testing.T) {
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/scenario.schema.json")
	if err != nil {
		t.Fatalf("%v: run make schema", err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
		t.Error("docs/scenario.schema.json is out of date: run make schema")
	}
}
