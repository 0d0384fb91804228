package protomesh

import (
	"regexp"

	"github.com/google/uuid"
	"google.golang.org/grpc/metadata"
)

// RequestIDKey is the metadata key that carries a request's id across hops (mesh/request-id.ts).
const RequestIDKey = "x-request-id"

// Printable ASCII without spaces, at most 128 characters: anything else is replaced, so that a
// garbage header can neither break a log line nor grow without bound.
var acceptableRequestID = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)

// requestIDFrom returns the request id carried in md when it is acceptable, otherwise a new UUID.
func requestIDFrom(md metadata.MD) string {
	if values := md.Get(RequestIDKey); len(values) > 0 && acceptableRequestID.MatchString(values[0]) {
		return values[0]
	}
	return uuid.NewString()
}
