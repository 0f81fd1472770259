package manifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	flaggerv1beta1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// scheme knows every type the manifests may hold, each as its real Go
// type: Kubernetes' own (client-go's scheme), CRDs, Flagger's Canary and
// MetricTemplate, and Istio's objects. A kind it does not know is an error.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(flaggerv1beta1.AddToScheme(s))
	utilruntime.Must(istioscheme.AddToScheme(s))
	return s
}()

// strictYAML decodes as the API server's strict field validation does:
// an unknown or duplicated field is an error, not a silent drop.
var strictYAML = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// object is one rendered object, decoded.
type object struct {
	Dir       string // its kustomization, relative to manifests/
	GVK       schema.GroupVersionKind
	Name      string
	Namespace string
	Raw       []byte // as kustomize rendered it
	Obj       runtime.Object
}

func (o object) String() string {
	if o.Namespace == "" {
		return fmt.Sprintf("%s: %s %s", o.Dir, o.GVK.Kind, o.Name)
	}
	return fmt.Sprintf("%s: %s %s/%s", o.Dir, o.GVK.Kind, o.Namespace, o.Name)
}

// tree is every kustomization under manifests/, rendered.
type tree struct {
	Dirs []string            // sorted, relative to manifests/ ("." for none)
	Objs map[string][]object // by kustomization, in kustomize's order
}

// all returns every object of every kustomization.
func (t *tree) all() []object {
	var out []object
	for _, d := range t.Dirs {
		out = append(out, t.Objs[d]...)
	}
	return out
}

// isKustomization tells the file names kustomize reads.
func isKustomization(name string) bool {
	return slices.Contains([]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}, name)
}

// findKustomizations lists the directories under root that hold a
// kustomization, relative to root.
func findKustomizations(fsys filesys.FileSystem, root string) ([]string, error) {
	var dirs []string
	err := fsys.Walk(root, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && isKustomization(info.Name()) {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}

// renderCache keeps a kustomization's decoded objects by the digest of
// every file it reads, so the typo cases re-render only what a typo
// touches (Istio's CRDs alone are a megabyte).
var renderCache sync.Map // digest → []object

type renderResult struct {
	objs []object
	err  error
}

// renderTree renders every kustomization under root and decodes each
// object strictly. Every failure is reported, joined.
func renderTree(fsys filesys.FileSystem, root string) (*tree, error) {
	dirs, err := findKustomizations(fsys, root)
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no kustomization under %s", root)
	}
	t := &tree{Dirs: dirs, Objs: map[string][]object{}}
	var errs []error
	for _, d := range dirs {
		objs, err := renderDir(fsys, root, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		t.Objs[d] = objs
	}
	return t, errors.Join(errs...)
}

func renderDir(fsys filesys.FileSystem, root, dir string) ([]object, error) {
	abs := path.Join(filepath.ToSlash(root), dir)
	digest, err := inputsDigest(fsys, filepath.ToSlash(root), abs)
	if err != nil {
		return nil, err
	}
	key := dir + "@" + digest
	if v, ok := renderCache.Load(key); ok {
		r := v.(renderResult)
		return r.objs, r.err
	}
	objs, err := renderAndDecode(fsys, abs, dir)
	renderCache.Store(key, renderResult{objs, err})
	return objs, err
}

func renderAndDecode(fsys filesys.FileSystem, abs, dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fsys, abs)
	if err != nil {
		return nil, fmt.Errorf("kustomize: %w", err)
	}
	var objs []object
	var errs []error
	for _, res := range m.Resources() {
		raw, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		o, err := decodeStrict(raw)
		o.Dir = dir
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", res.GetKind(), res.GetName(), err))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// decodeStrict decodes one object into its Go type, refusing unknown and
// duplicate fields.
func decodeStrict(raw []byte) (object, error) {
	obj, gvk, err := strictYAML.Decode(raw, nil, nil)
	if err != nil {
		return object{}, err
	}
	if err := strictProtoSpec(obj, raw); err != nil {
		return object{}, err
	}
	acc, ok := obj.(interface {
		GetName() string
		GetNamespace() string
	})
	if !ok {
		return object{}, fmt.Errorf("%s has no metadata", gvk)
	}
	return object{GVK: *gvk, Name: acc.GetName(), Namespace: acc.GetNamespace(), Raw: raw, Obj: obj}, nil
}

// strictProtoSpec decodes again the spec of a type whose spec is a
// protobuf message (Istio's): their JSON unmarshalers allow unknown fields,
// so the strict decoding above lets a typo inside the spec through.
func strictProtoSpec(obj runtime.Object, raw []byte) error {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	spec := v.Elem().FieldByName("Spec")
	if !spec.IsValid() || !spec.CanAddr() {
		return nil
	}
	msg, ok := spec.Addr().Interface().(proto.Message)
	if !ok {
		return nil
	}
	var doc struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return err
	}
	if len(doc.Spec) == 0 {
		return nil
	}
	fresh := msg.ProtoReflect().New().Interface()
	if err := (protojson.UnmarshalOptions{}).Unmarshal(doc.Spec, fresh); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return nil
}

// inputsDigest hashes the files a kustomization can read: those beside
// its kustomization file and, through its resources, components and bases,
// those of the directories it builds on; by their paths under root, so a
// copy of the tree elsewhere shares the cache.
func inputsDigest(fsys filesys.FileSystem, root, dir string) (string, error) {
	h := sha256.New()
	if err := hashInputs(fsys, path.Clean(root), dir, map[string]bool{}, h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashInputs(fsys filesys.FileSystem, root, dir string, seen map[string]bool, h io.Writer) error {
	dir = path.Clean(dir)
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return err
	}
	slices.Sort(entries)
	var refs []string
	for _, name := range entries {
		p := path.Join(dir, name)
		if fsys.IsDir(p) {
			continue
		}
		data, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", strings.TrimPrefix(p, root), len(data))
		h.Write(data)
		if isKustomization(name) {
			var k struct {
				Resources, Components, Bases []string
			}
			// Lenient: kustomize itself reports a bad kustomization.
			_ = yaml.Unmarshal(data, &k)
			refs = append(append(append(refs, k.Resources...), k.Components...), k.Bases...)
		}
	}
	for _, r := range refs {
		if p := path.Join(dir, r); fsys.IsDir(p) {
			if err := hashInputs(fsys, root, p, seen, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// memFS copies the non-Go files under the directory src on disk into an
// in-memory file system, under /manifests.
func memFS(src string) (filesys.FileSystem, string, error) {
	mem := filesys.MakeFsInMemory()
	const root = "/manifests"
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join(root, filepath.ToSlash(rel)), data)
	})
	return mem, root, err
}

// replaceOnce edits a file of fsys, and fails unless old is in it exactly
// once (so a test case can never silently stop testing anything).
func replaceOnce(fsys filesys.FileSystem, file, old, new string) error {
	data, err := fsys.ReadFile(file)
	if err != nil {
		return err
	}
	if n := bytes.Count(data, []byte(old)); n != 1 {
		return fmt.Errorf("%s: %q occurs %d times, want once", file, old, n)
	}
	return fsys.WriteFile(file, bytes.Replace(data, []byte(old), []byte(new), 1))
}
