package protomeshtest

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one span as an OTLP receiver got it.
type Span struct {
	Service                   string // the resource's service.name
	Name                      string
	Kind                      tracepb.Span_SpanKind
	TraceID, SpanID, ParentID string // hex; ParentID "" for a root
	Attributes                map[string]any
}

// String is the span on one line, its attributes sorted by key.
func (s Span) String() string {
	keys := make([]string, 0, len(s.Attributes))
	for key := range s.Attributes {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	attrs := make([]string, 0, len(keys))
	for _, key := range keys {
		attrs = append(attrs, fmt.Sprintf("%s=%v", key, s.Attributes[key]))
	}
	return fmt.Sprintf("%s %s service.name=%s trace=%s span=%s parent=%s {%s}", strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"),
		s.Name, s.Service, s.TraceID, s.SpanID, s.ParentID, strings.Join(attrs, " "))
}

// OTLPReceiver is an OTLP/HTTP trace receiver as a collector serves it (POST /v1/traces, an
// ExportTraceServiceRequest in protobuf), on 127.0.0.1:0.
type OTLPReceiver struct {
	// URL is the receiver's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it.
	URL string

	t     testing.TB
	mu    sync.Mutex
	spans []Span
}

// StartOTLPReceiver starts a receiver, closed at cleanup; a request it cannot read fails the test.
func StartOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	r := &OTLPReceiver{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.export)
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	r.URL = server.URL
	return r
}

func (r *OTLPReceiver) export(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var export coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &export)
	}
	if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		r.t.Errorf("POST /v1/traces (%s): %v", req.Header.Get("Content-Type"), err)
		http.Error(w, "want an ExportTraceServiceRequest in protobuf", http.StatusBadRequest)
		return
	}
	r.add(&export)
	response, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(response)
}

func (r *OTLPReceiver) add(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, resourceSpans := range export.GetResourceSpans() {
		service := ""
		for _, attribute := range resourceSpans.GetResource().GetAttributes() {
			if attribute.GetKey() == "service.name" {
				service = attribute.GetValue().GetStringValue()
			}
		}
		for _, scopeSpans := range resourceSpans.GetScopeSpans() {
			for _, span := range scopeSpans.GetSpans() {
				r.spans = append(r.spans, Span{
					Service:    service,
					Name:       span.GetName(),
					Kind:       span.GetKind(),
					TraceID:    hex.EncodeToString(span.GetTraceId()),
					SpanID:     hex.EncodeToString(span.GetSpanId()),
					ParentID:   hex.EncodeToString(span.GetParentSpanId()),
					Attributes: attributesOf(span.GetAttributes()),
				})
			}
		}
	}
}

// attributesOf are a span's attributes: strings as string, integers as int64, the rest as OTLP has them.
func attributesOf(pairs []*commonpb.KeyValue) map[string]any {
	attributes := make(map[string]any, len(pairs))
	for _, pair := range pairs {
		switch value := pair.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			attributes[pair.GetKey()] = value.StringValue
		case *commonpb.AnyValue_IntValue:
			attributes[pair.GetKey()] = value.IntValue
		default:
			attributes[pair.GetKey()] = value
		}
	}
	return attributes
}

// Spans returns the spans received so far, each logged for the reader of go test -v.
func (r *OTLPReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, span := range r.spans {
		r.t.Log(span)
	}
	return slices.Clone(r.spans)
}
