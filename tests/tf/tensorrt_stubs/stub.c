/* Stand-in for libnvinfer, libnvinfer_plugin and libnvonnxparser (TensorRT 10 and 11),
   used by tests/tf/test_tensorrt_api.py.

   NVIDIA's Python bindings (tensorrt_bindings/tensorrt.so) import exactly these nine
   C symbols from those libraries (`nm -D --undefined-only`); everything else goes
   through C++ vtables of objects the factories return. Every factory here returns
   NULL, which is what createInferBuilder does when CUDA cannot start, so the real
   bindings import and every class, enum, property and signature is NVIDIA's own,
   but no TensorRT code runs: nothing is parsed, built or executed.

   Like the real library, the builder and runtime factories may first say why to the
   caller's nvinfer1::ILogger, through `virtual void log(Severity, char const*) noexcept`:
   set TRT_STUB_LOG_SEVERITY (0 internal error, 1 error, 2 warning, ...) and
   TRT_STUB_LOG_MESSAGE. Unset: silent. `log` is vtable slot 0 in TensorRT 10; in 11,
   ILogger derives from IVersionedInterface (getAPILanguage, getInterfaceInfo and the
   two destructor entries come first), so it is slot 4 (read from the vtable of the
   bindings' own DefaultLogger in tensorrt.so 11.4). Build with -DTRT_LOG_SLOT=4 for 11.

   Built once per soname:
     cc -shared -fPIC -DTRT_LOG_SLOT=0 -Wl,-soname,libnvinfer.so.10 -o libnvinfer.so.10 stub.c */
#include <stdint.h>
#include <stdlib.h>

#ifndef TRT_LOG_SLOT
#define TRT_LOG_SLOT 0
#endif

typedef void (*log_fn)(void *self, int32_t severity, const char *msg);

static void *report(void *logger) {
    const char *severity = getenv("TRT_STUB_LOG_SEVERITY");
    const char *message = getenv("TRT_STUB_LOG_MESSAGE");
    if (logger && severity && *severity && message) {
        log_fn log = (*(log_fn **)logger)[TRT_LOG_SLOT];   /* ILogger::log */
        log(logger, (int32_t)atoi(severity), message);
    }
    return 0;
}

void *createInferBuilder_INTERNAL(void *logger, int32_t version) { return report(logger); }
void *createInferRuntime_INTERNAL(void *logger, int32_t version) { return report(logger); }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version) { return 0; }
void *getBuilderPluginRegistry(int32_t capability) { return 0; }
void *getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *ns) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
