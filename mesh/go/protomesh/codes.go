package protomesh

import (
	"strconv"

	"google.golang.org/grpc/codes"
)

// codeNames are the status names of the gRPC spec (doc/statuscodes.md), as grpc-js prints them in
// the log lines of every protomesh kit; grpc-go's codes.Code.String() spells them differently.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// CodeName returns the spec's name of a status code ("NOT_FOUND").
func CodeName(code codes.Code) string {
	if int(code) < len(codeNames) {
		return codeNames[code]
	}
	return strconv.Itoa(int(code))
}

// IsServerFailure reports whether a status code counts as a failure of the server (logged at warn,
// with the details) rather than a caller mistake or success, after gRFC A50's split
// (mesh/errors.ts isServerFailure).
func IsServerFailure(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}
