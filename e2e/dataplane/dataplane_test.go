package dataplane

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A Service's proxy forwards to its endpoints round robin and refuses
// connections when it has none, as kube-proxy does.
func TestServiceProxy(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "podinfo-primary", Namespace: "test"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	sv, err := newService(svc)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.close()
	url := "http://" + sv.addrs()[80]
	get := func() string {
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			return "error"
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := get(); got != "error" {
		t.Errorf("no endpoints: got %q, want a refused connection", got)
	}
	sv.update(svc, map[int32][]string{80: {strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://")}})
	seen := map[string]int{}
	for range 10 {
		seen[get()]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("round robin: %v", seen)
	}
}

// Cluster addresses in env and args become the local addresses that play
// them; the VirtualService's host goes to its router.
func TestResolve(t *testing.T) {
	d := &DataPlane{services: map[string]*service{}, routers: map[string]*router{}}
	for _, name := range []string{"podinfo", "podinfo-locust-master"} {
		sv, err := newService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "test"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}, {Port: 5557}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer sv.close()
		d.services["test/"+name] = sv
	}
	d.routers["test/podinfo"] = &router{addr: "127.0.0.1:1111", port: 80}
	master := d.services["test/podinfo-locust-master"].addrs()[5557]
	for in, want := range map[string]string{
		"http://podinfo.test.svc.cluster.local:80":          "http://127.0.0.1:1111",
		"podinfo-locust-master.test.svc.cluster.local:5557": master,
		"http://example.com:80":                             "http://example.com:80",
		"--host=http://podinfo.test:80/x":                   "--host=http://127.0.0.1:1111/x",
	} {
		if got := d.resolve(in); got != want {
			t.Errorf("resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseVirtualService(t *testing.T) {
	vs := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"http": []any{
		map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "podinfo-primary"}, "weight": int64(70)},
			map[string]any{"destination": map[string]any{"host": "podinfo-canary"}, "weight": int64(30)},
		}, "mirror": map[string]any{"host": "podinfo-canary"}},
	}}}}
	route, p, c, pw, cw, m := parseVS(vs)
	if route == nil || p != "podinfo-primary" || c != "podinfo-canary" || pw != 70 || cw != 30 || !m {
		t.Errorf("parseVS: %s %s %d %d %v", p, c, pw, cw, m)
	}
}
