package kubernetes_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwapiv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// scheme knows every kind the manifests here may hold: Kubernetes' own, Istio's security API,
// Envoy Gateway's and the Gateway API's. A kind it does not know is an error, not a pass.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
		istiosecurity.AddToScheme, egv1a1.AddToScheme, gwapiv1.Install, gwapiv1beta1.Install,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes as the API server's strict field validation does: an unknown or duplicate
// field is an error.
var strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// documents splits a multi-document YAML stream, skipping documents that hold only comments.
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		empty := true
		for _, line := range strings.Split(string(doc), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, doc)
		}
	}
}

// decodeObjects strictly decodes every document of a manifest into its upstream Go type. Istio's
// client-go types read their spec leniently (its JSON unmarshaler allows unknown fields), so
// the spec of an Istio object is decoded again into its istio.io/api message with protojson,
// which refuses unknown fields and invalid enum names.
func decodeObjects(data []byte) ([]runtime.Object, error) {
	docs, err := documents(data)
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	for i, doc := range docs {
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		obj, gvk, err := strict.Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if gvk.Group == istiosecurity.SchemeGroupVersion.Group {
			if err := strictIstioSpec(js, obj); err != nil {
				return nil, fmt.Errorf("document %d (%s): spec: %w", i+1, gvk.Kind, err)
			}
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func strictIstioSpec(js []byte, obj runtime.Object) error {
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return err
	}
	var spec proto.Message
	switch o := obj.(type) {
	case *istiosecurity.AuthorizationPolicy:
		spec = &o.Spec
	case *istiosecurity.PeerAuthentication:
		spec = &o.Spec
	case *istiosecurity.RequestAuthentication:
		spec = &o.Spec
	default:
		return fmt.Errorf("no strict reading for %T", obj)
	}
	if len(raw.Spec) == 0 {
		return errors.New("no spec")
	}
	// A fresh message of the spec's type, so that what the lenient reader filled is not kept.
	fresh := spec.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(raw.Spec, fresh); err != nil {
		return err
	}
	if !proto.Equal(fresh, spec) {
		return errors.New("read differently by Istio's client types and by its API messages")
	}
	return nil
}

// decodeMeshConfig strictly decodes Istio mesh configuration (YAML) into its API message.
func decodeMeshConfig(data []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	m := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(js, m); err != nil {
		return nil, err
	}
	return m, nil
}

// only returns the objects of type T, failing the test unless there are n of them.
func only[T runtime.Object](t *testing.T, objs []runtime.Object, n int) []T {
	t.Helper()
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	if len(out) != n {
		var zero T
		t.Fatalf("%d objects of type %T, want %d", len(out), zero, n)
	}
	return out
}
