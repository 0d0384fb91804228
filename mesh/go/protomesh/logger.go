package protomesh

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// pino's level numbers (pino's levels.js): what every protomesh log line carries in "level".
const (
	pinoDebug = 20
	pinoInfo  = 30
	pinoWarn  = 40
	pinoError = 50
)

// NewLogger returns a slog.Logger that writes pino-shaped JSON lines to w, one per record, as the
// TypeScript kit's pino loggers do (mesh/logger.ts): {"level":30,"time":<ms since epoch>,"pid":…,
// "name":<name>, …fields, "msg":…}, so that one log pipeline reads every language of the mesh.
// level is one of LogLevels ("" is info).
func NewLogger(w io.Writer, name, level string) *slog.Logger {
	return slog.New(&pinoHandler{
		out:    &lockedWriter{w: w},
		level:  parseLevel(level),
		prefix: []byte(`"pid":` + strconv.Itoa(os.Getpid()) + `,"name":` + string(quote(name))),
	})
}

// slog levels for pino's trace, fatal and silent, which slog has no name for.
const (
	levelTrace  = slog.LevelDebug - 4
	levelFatal  = slog.LevelError + 4
	levelSilent = slog.LevelError + 100
)

func parseLevel(level string) slog.Level {
	switch level {
	case "trace":
		return levelTrace
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	case "fatal":
		return levelFatal
	case "silent":
		return levelSilent
	default:
		return slog.LevelInfo
	}
}

func pinoLevel(level slog.Level) int {
	switch {
	case level < slog.LevelDebug:
		return 10
	case level < slog.LevelInfo:
		return pinoDebug
	case level < slog.LevelWarn:
		return pinoInfo
	case level < slog.LevelError:
		return pinoWarn
	case level < levelFatal:
		return pinoError
	default:
		return 60
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// pinoHandler is a slog.Handler writing pino's line shape. Groups flatten into "group.key" names:
// pino has no nesting of its own beyond object values.
type pinoHandler struct {
	out    *lockedWriter
	level  slog.Leveler
	prefix []byte // the fields bound so far, JSON without braces
	group  string
}

func (h *pinoHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *pinoHandler) Handle(_ context.Context, record slog.Record) error {
	line := make([]byte, 0, 256)
	line = append(line, `{"level":`...)
	line = strconv.AppendInt(line, int64(pinoLevel(record.Level)), 10)
	at := record.Time
	if at.IsZero() {
		at = time.Now()
	}
	line = append(line, `,"time":`...)
	line = strconv.AppendInt(line, at.UnixMilli(), 10)
	line = append(line, ',')
	line = append(line, h.prefix...)
	record.Attrs(func(attr slog.Attr) bool {
		line = appendAttr(line, h.group, attr)
		return true
	})
	line = append(line, `,"msg":`...)
	line = append(line, quote(record.Message)...)
	line = append(line, "}\n"...)
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(line)
	return err
}

func (h *pinoHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	prefix := bytes.Clone(h.prefix)
	for _, attr := range attrs {
		prefix = appendAttr(prefix, h.group, attr)
	}
	return &pinoHandler{out: h.out, level: h.level, prefix: prefix, group: h.group}
}

func (h *pinoHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &pinoHandler{out: h.out, level: h.level, prefix: h.prefix, group: h.group + name + "."}
}

func appendAttr(line []byte, group string, attr slog.Attr) []byte {
	value := attr.Value.Resolve()
	if value.Kind() == slog.KindGroup {
		for _, inner := range value.Group() {
			line = appendAttr(line, group+attr.Key+".", inner)
		}
		return line
	}
	if attr.Key == "" {
		return line
	}
	line = append(line, ',')
	line = append(line, quote(group+attr.Key)...)
	line = append(line, ':')
	return append(line, jsonValue(value)...)
}

func jsonValue(value slog.Value) []byte {
	var v any
	switch value.Kind() {
	case slog.KindDuration:
		v = value.Duration().Milliseconds()
	case slog.KindTime:
		v = value.Time().UnixMilli()
	default:
		v = value.Any()
		if err, ok := v.(error); ok {
			v = err.Error()
		}
	}
	text, err := json.Marshal(v)
	if err != nil {
		return quote(err.Error())
	}
	return text
}

func quote(s string) []byte {
	text, _ := json.Marshal(s)
	return text
}
