// k8s-validate: a structural check of rendered Kubernetes manifests (the output of `helm template`), used by
// tests/deploy.rs where kubeconform cannot run (kubeconform needs JSON schemas downloaded from GitHub, which
// this project's machines cannot reach).
//
// Every YAML document read from stdin (or the files given as arguments) is decoded STRICTLY into the official
// Go type of its apiVersion/kind -- the k8s.io/api types the API server itself decodes into, plus the
// prometheus-operator types for ServiceMonitor and PrometheusRule. A misspelt or misplaced field, a wrong value
// type or an unknown apiVersion/kind fails the check with the document's kind/name and the field path.
// A few required fields the types cannot express are checked too (container name and image, selector matching
// the pod template labels of workloads).
//
// Usage: helm template ... | k8s-validate [--skip-kind GROUP/VERSION/KIND]... [FILE]...
// exit 0: every document valid; 1: errors printed on stderr. --skip-kind names a custom resource this tool has no
// Go types for (e.g. cass-operator's cassandra.datastax.com/v1beta1/CassandraDatacenter): such documents are
// counted as skipped and left to the caller's own checks.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

func main() {
	if err := monitoringv1.AddToScheme(scheme.Scheme); err != nil {
		fmt.Fprintln(os.Stderr, "k8s-validate: registering monitoring.coreos.com/v1:", err)
		os.Exit(2)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})

	var inputs []namedReader
	skip := map[string]bool{}
	var paths []string
	for i := 1; i < len(os.Args); i++ {
		arg := os.Args[i]
		switch {
		case arg == "--skip-kind" && i+1 < len(os.Args):
			skip[os.Args[i+1]] = true
			i++
		case strings.HasPrefix(arg, "--skip-kind="):
			skip[strings.TrimPrefix(arg, "--skip-kind=")] = true
		default:
			paths = append(paths, arg)
		}
	}
	if len(paths) > 0 {
		for _, path := range paths {
			f, err := os.Open(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, "k8s-validate:", err)
				os.Exit(2)
			}
			defer f.Close()
			inputs = append(inputs, namedReader{path, f})
		}
	} else {
		inputs = append(inputs, namedReader{"stdin", os.Stdin})
	}

	var failures []string
	counts := map[string]int{}
	total := 0
	for _, in := range inputs {
		reader := utilyaml.NewYAMLReader(bufio.NewReader(in.r))
		for index := 0; ; index++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: document %d: %v", in.name, index, err))
				break
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			var meta metav1.TypeMeta
			if err := sigsyaml.Unmarshal(doc, &meta); err == nil && skip[meta.APIVersion+"/"+meta.Kind] {
				counts[meta.Kind+"(skipped)"]++
				continue
			}
			obj, gvk, err := strict.Decode(doc, nil, nil)
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: document %d (%s): %v", in.name, index, describe(doc), err))
				continue
			}
			total++
			counts[gvk.Kind]++
			for _, problem := range required(obj) {
				failures = append(failures, fmt.Sprintf("%s: %s %s: %s", in.name, gvk.Kind, name(obj), problem))
			}
		}
	}
	for _, f := range failures {
		fmt.Fprintln(os.Stderr, f)
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	fmt.Printf("k8s-validate: %d documents, %d errors (%s)\n", total, len(failures), strings.Join(sorted(kinds), " "))
	if len(failures) > 0 || total == 0 {
		os.Exit(1)
	}
}

type namedReader struct {
	name string
	r    io.Reader
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func describe(doc []byte) string {
	var kind, nm string
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "kind:") && kind == "" {
			kind = strings.TrimSpace(strings.TrimPrefix(line, "kind:"))
		}
		if strings.HasPrefix(line, "  name:") && nm == "" {
			nm = strings.TrimSpace(strings.TrimPrefix(line, "  name:"))
		}
	}
	return kind + " " + nm
}

func name(obj runtime.Object) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetName()
	}
	return "?"
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// required checks what the API server's validation would reject and strict decoding cannot see.
func required(obj runtime.Object) []string {
	var problems []string
	if m, ok := obj.(metav1.Object); ok && m.GetName() == "" {
		problems = append(problems, "metadata.name is empty")
	}
	check := func(path string, selector *metav1.LabelSelector, tpl *corev1.PodTemplateSpec, claims ...string) {
		if selector == nil {
			problems = append(problems, path+".selector is missing")
			return
		}
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s.selector: %v", path, err))
		} else if sel.Empty() || !sel.Matches(labels.Set(tpl.Labels)) {
			problems = append(problems, path+".selector does not match the pod template's labels")
		}
		problems = append(problems, podProblems(path+".template.spec", &tpl.Spec, claims)...)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		check("spec", o.Spec.Selector, &o.Spec.Template)
	case *appsv1.StatefulSet:
		var claims []string
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		check("spec", o.Spec.Selector, &o.Spec.Template, claims...)
	case *appsv1.DaemonSet:
		check("spec", o.Spec.Selector, &o.Spec.Template)
	}
	return problems
}

func podProblems(path string, spec *corev1.PodSpec, claims []string) []string {
	var problems []string
	if len(spec.Containers) == 0 {
		problems = append(problems, path+".containers is empty")
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range claims {
		volumes[c] = true
	}
	for i, c := range all {
		p := fmt.Sprintf("%s.containers[%d]", path, i)
		if c.Name == "" {
			problems = append(problems, p+".name is empty")
		}
		if c.Image == "" {
			problems = append(problems, p+".image is empty")
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("%s (%s): volumeMount %q names no volume of the pod", p, c.Name, m.Name))
			}
		}
	}
	return problems
}
