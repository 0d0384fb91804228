package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	// Every service of the mesh, linked so that protoregistry.GlobalFiles knows its methods.
	_ "github.com/protomesh/protomesh/generated/go/protomesh/fault/v1"
	_ "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	_ "github.com/protomesh/protomesh/generated/go/protomesh/registry/v1"
	_ "github.com/protomesh/protomesh/generated/go/shop/catalog/v1"
	_ "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	_ "github.com/protomesh/protomesh/generated/go/shop/orders/v1"
	_ "github.com/protomesh/protomesh/generated/go/shop/pricing/v1"
)

// unknownFieldNumber is the field --unknown-field adds to the Echo payload (interop contract).
const unknownFieldNumber = 100

const echoMethod = "/protomesh.interop.v1.InteropService/Echo"

type metadataFlag []string

func (m *metadataFlag) String() string     { return strings.Join(*m, ",") }
func (m *metadataFlag) Set(v string) error { *m = append(*m, v); return nil }

type callFlags struct {
	target, method, request, requestID string
	deadlineMs, cancelAfterMs, count   int
	unknownField                       bool
	metadata                           metadataFlag
}

// entry is one header or trailer as the call prints it.
type entry struct {
	Key    string  `json:"key"`
	Text   *string `json:"text,omitempty"`
	Binary *string `json:"binary,omitempty"`
}

// callLine is the one JSON line printed per call.
type callLine struct {
	Code             int             `json:"code"`
	CodeName         string          `json:"codeName"`
	Details          string          `json:"details"`
	Response         json.RawMessage `json:"response,omitempty"`
	Headers          []entry         `json:"headers"`
	Trailers         []entry         `json:"trailers"`
	ElapsedMs        float64         `json:"elapsedMs"`
	UnknownFieldKept *bool           `json:"unknownFieldKept,omitempty"`
}

func parseCallFlags(args []string) callFlags {
	var f callFlags
	set := flag.NewFlagSet("interop call", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	set.StringVar(&f.target, "target", "", "mesh service name")
	set.StringVar(&f.method, "method", "", "/full.Service/Method")
	set.StringVar(&f.request, "request", "", "request as proto3 JSON")
	set.StringVar(&f.requestID, "request-id", "", "x-request-id to send")
	set.IntVar(&f.deadlineMs, "deadline-ms", 0, "deadline of each call (ms)")
	set.IntVar(&f.cancelAfterMs, "cancel-after-ms", 0, "cancel each call after N ms")
	set.IntVar(&f.count, "count", 1, "calls to make, one after another")
	set.BoolVar(&f.unknownField, "unknown-field", false, "add an unknown field to the Echo payload")
	set.Var(&f.metadata, "metadata", "key=value, repeatable")
	if err := set.Parse(args); err != nil {
		usage(err.Error())
	}
	switch {
	case set.NArg() > 0:
		usage(fmt.Sprintf("no arguments beyond the flags, got %q", set.Arg(0)))
	case f.target == "":
		usage("--target")
	case f.method == "":
		usage("--method")
	case f.request == "":
		usage("--request")
	case f.count < 1:
		usage(fmt.Sprintf("--count >= 1, got %d", f.count))
	case f.deadlineMs < 0:
		usage(fmt.Sprintf("--deadline-ms >= 0, got %d", f.deadlineMs))
	case f.cancelAfterMs < 0:
		usage(fmt.Sprintf("--cancel-after-ms >= 0, got %d", f.cancelAfterMs))
	case f.unknownField && f.method != echoMethod:
		usage("--unknown-field only with --method " + echoMethod)
	}
	return f
}

func call(args []string) error {
	f := parseCallFlags(args)
	methodDesc, err := findMethod(f.method)
	if err != nil {
		usage("--method naming a known method: " + err.Error())
	}
	request := dynamicpb.NewMessage(methodDesc.Input())
	if err := protojson.Unmarshal([]byte(f.request), request); err != nil {
		usage(fmt.Sprintf("--request as proto3 JSON of %s: %v", methodDesc.Input().FullName(), err))
	}
	var sent []byte
	if f.unknownField {
		sent = addUnknownField(request)
	}
	outgoing := metadata.MD{}
	for _, pair := range f.metadata {
		key, value, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			usage(fmt.Sprintf("--metadata as key=value, got %q", pair))
		}
		key = strings.ToLower(key)
		if strings.HasSuffix(key, "-bin") {
			raw, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				usage(fmt.Sprintf("--metadata %s: a base64 value for a -bin key: %v", key, err))
			}
			value = string(raw)
		}
		outgoing.Append(key, value)
	}
	if f.requestID != "" {
		outgoing.Set(protomesh.RequestIDKey, f.requestID)
	}
	settings, err := protomesh.LoadSettings(nil)
	if err != nil {
		return err
	}
	// The kit's call lines go to stderr: stdout carries the result lines only.
	conn, err := protomesh.Dial(f.target, protomesh.DialSettings(settings), protomesh.DialLogger(protomesh.NewLogger(os.Stderr, "interop-call", settings.LogLevel)))
	if err != nil {
		return err
	}
	defer conn.Close()
	out := json.NewEncoder(os.Stdout)
	for range f.count {
		line := invoke(conn, f, methodDesc, request, outgoing, sent)
		if err := out.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func invoke(conn *grpc.ClientConn, f callFlags, methodDesc protoreflect.MethodDescriptor, request proto.Message, outgoing metadata.MD, sent []byte) callLine {
	ctx := metadata.NewOutgoingContext(context.Background(), outgoing)
	var cancel context.CancelFunc = func() {}
	if f.deadlineMs > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.deadlineMs)*time.Millisecond)
	}
	defer cancel()
	if f.cancelAfterMs > 0 {
		var cancelCall context.CancelFunc
		ctx, cancelCall = context.WithCancel(ctx)
		timer := time.AfterFunc(time.Duration(f.cancelAfterMs)*time.Millisecond, cancelCall)
		defer timer.Stop()
		defer cancelCall()
	}
	response := dynamicpb.NewMessage(methodDesc.Output())
	var headers, trailers metadata.MD
	startedAt := time.Now()
	err := conn.Invoke(ctx, f.method, request, response, grpc.Header(&headers), grpc.Trailer(&trailers))
	elapsed := float64(time.Since(startedAt).Microseconds()) / 1000
	st := status.Convert(err)
	line := callLine{
		Code:      int(st.Code()),
		CodeName:  protomesh.CodeName(st.Code()),
		Details:   st.Message(),
		Headers:   entries(headers),
		Trailers:  entries(trailers),
		ElapsedMs: elapsed,
	}
	if err == nil {
		text, marshalErr := protojson.Marshal(response)
		if marshalErr == nil {
			var compact bytes.Buffer
			_ = json.Compact(&compact, text)
			line.Response = compact.Bytes()
		}
		if sent != nil {
			kept := keptUnknownField(response, sent)
			line.UnknownFieldKept = &kept
		}
	} else if sent != nil {
		kept := false
		line.UnknownFieldKept = &kept
	}
	return line
}

// findMethod looks "/pkg.Service/Method" up in the linked descriptors.
func findMethod(path string) (protoreflect.MethodDescriptor, error) {
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("want /pkg.Service/Method, got %q", path)
	}
	descriptor, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, fmt.Errorf("no service %q", service)
	}
	serviceDesc, ok := descriptor.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is not a service", service)
	}
	methodDesc := serviceDesc.Methods().ByName(protoreflect.Name(method))
	if methodDesc == nil {
		return nil, fmt.Errorf("service %q has no method %q", service, method)
	}
	if methodDesc.IsStreamingClient() || methodDesc.IsStreamingServer() {
		return nil, errors.New("a unary method; " + path + " streams")
	}
	return methodDesc, nil
}

// addUnknownField appends field 100 (length-delimited, "from-go") to the request's payload and
// returns the bytes appended.
func addUnknownField(request *dynamicpb.Message) []byte {
	field := request.Descriptor().Fields().ByName("payload")
	payload := request.Mutable(field).Message()
	raw := protowire.AppendTag(nil, unknownFieldNumber, protowire.BytesType)
	raw = protowire.AppendString(raw, "from-"+language)
	payload.SetUnknown(append(payload.GetUnknown(), raw...))
	return raw
}

// keptUnknownField reports whether the response's payload carries exactly the unknown field sent.
func keptUnknownField(response *dynamicpb.Message, sent []byte) bool {
	field := response.Descriptor().Fields().ByName("payload")
	if !response.Has(field) {
		return false
	}
	return bytes.Equal(response.Get(field).Message().GetUnknown(), sent)
}

// entries are the headers or trailers the interop contract prints: x-interop-* and x-request-id,
// in key order; -bin values in base64.
func entries(md metadata.MD) []entry {
	keys := make([]string, 0, len(md))
	for key := range md {
		if strings.HasPrefix(key, "x-interop-") || key == protomesh.RequestIDKey {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	list := []entry{}
	for _, key := range keys {
		for _, value := range md[key] {
			if strings.HasSuffix(key, "-bin") {
				encoded := base64.StdEncoding.EncodeToString([]byte(value))
				list = append(list, entry{Key: key, Binary: &encoded})
			} else {
				text := value
				list = append(list, entry{Key: key, Text: &text})
			}
		}
	}
	return list
}
