package serve

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"
)

// PProf is the --enable-pprof server: net/http/pprof on localhost only, as
// upstream serves it.
func PProf(port int) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{Addr: "localhost:" + strconv.Itoa(port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}
