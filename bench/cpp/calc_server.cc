// calculator.Calculator's Calculate and CalculateStream served by C++ gRPC (Debian's libgrpc++,
// the callback API): the C++ peer of bench/run.py. The other RPCs answer UNIMPLEMENTED.
//
//   bench/cpp/build OUT_DIR           # compiles it (bench/run.py does this)
//   OUT_DIR/calc-server-cpp --port 0  # prints `listening on 127.0.0.1:PORT` once bound
//
// Errors follow the calcmesh calculator: INVALID_ARGUMENT for NaN operands, unknown operators
// and division by zero; OUT_OF_RANGE when finite operands overflow.

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "calculator.grpc.pb.h"

namespace {

// The result of `a op b`, or a status saying why there is none.
grpc::Status Calculate(double a, const std::string& op, double b, double* result) {
  using grpc::Status;
  using grpc::StatusCode;
  if (std::isnan(a) || std::isnan(b)) {
    return Status(StatusCode::INVALID_ARGUMENT, "operands must be numbers, got NaN");
  }
  if (op.size() != 1 || std::strchr("+-*/%^", op[0]) == nullptr) {
    return Status(StatusCode::INVALID_ARGUMENT, "unknown operator '" + op + "': expected one of + - * / % ^");
  }
  if (((op == "/" || op == "%") && b == 0) || (op == "^" && a == 0 && b < 0)) {
    return Status(StatusCode::INVALID_ARGUMENT, "division by zero in " + op);
  }
  switch (op[0]) {
    case '+': *result = a + b; break;
    case '-': *result = a - b; break;
    case '*': *result = a * b; break;
    case '/': *result = a / b; break;
    case '%': *result = std::fmod(a, b); break;
    default: *result = std::pow(a, b); break;
  }
  if (std::isnan(*result)) {
    return Status(StatusCode::INVALID_ARGUMENT, "no real result");
  }
  if (std::isinf(*result) && std::isfinite(a) && std::isfinite(b)) {
    return Status(StatusCode::OUT_OF_RANGE, "the result overflows a 64-bit float");
  }
  return Status::OK;
}

// CalculateStream: reads a request, writes its response, then reads the next, until the
// client half-closes; per-item errors travel in Response.error.
class Pipeline : public grpc::ServerBidiReactor<calculator::Request, calculator::Response> {
 public:
  Pipeline() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    double result = 0;
    grpc::Status status = Calculate(request_.num1(), request_.operator_(), request_.num2(), &result);
    if (status.ok()) {
      response_.set_result(result);
    } else {
      response_.mutable_error()->set_code(status.error_code());
      response_.mutable_error()->set_message(status.error_message());
    }
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (ok) {
      StartRead(&request_);
    } else {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke"));
    }
  }

  void OnDone() override { delete this; }

 private:
  calculator::Request request_;
  calculator::Response response_;
};

class Calculator final : public calculator::Calculator::CallbackService {
  grpc::ServerUnaryReactor* Calculate(grpc::CallbackServerContext* context,
                                      const calculator::Request* request,
                                      calculator::Response* response) override {
    double result = 0;
    grpc::Status status = ::Calculate(request->num1(), request->operator_(), request->num2(), &result);
    response->set_result(result);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  grpc::ServerBidiReactor<calculator::Request, calculator::Response>* CalculateStream(
      grpc::CallbackServerContext*) override {
    return new Pipeline();
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string port = "50051";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) {
      port = argv[++i];
    } else {
      std::cerr << "usage: " << argv[0] << " [--port PORT]   (0 picks a free one)\n";
      return 2;
    }
  }
  Calculator service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + port, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::cerr << "cannot listen on 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << "listening on 127.0.0.1:" << bound << std::endl;
  server->Wait();
  return 0;
}
