// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus computes for each object it reads:
// Flux, kpt and Argo CD's kstatus-based checks use this very function. It reads a JSON array
// of objects (or one object) on stdin and writes one JSON line per object:
// {"name": ..., "status": "Current|InProgress|Failed|Terminating|Unknown", "message": ...}.
// The tests (tests/unit/test_kstatus.py) check the verdict for every phase of both kinds.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var objects []json.RawMessage
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		objects = append(objects, trimmed)
	} else if err = json.Unmarshal(data, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: input is not a JSON object or array:", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, raw := range objects {
		// Unstructured's own decoder, as a client's: integers stay int64 (kstatus reads
		// metadata.generation as one).
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: bad object:", err)
			os.Exit(2)
		}
		v := verdict{Name: u.GetName()}
		res, err := status.Compute(u)
		if err != nil {
			v.Error = err.Error()
		} else {
			v.Status, v.Message = res.Status.String(), res.Message
		}
		if err := out.Encode(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
