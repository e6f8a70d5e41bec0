#!/usr/bin/env python3
"""calculator.Calculator served by Python grpcio: all five RPCs with the Rust server's semantics.

    python calc_server.py --port 50051            # the whole service (sync thread pool, like the old project)
    python calc_server.py --port 0 --asyncio      # the same on grpc.aio
    python calc_server.py --port 0 --legacy       # only the original contract: Calculate

Prints `listening on HOST:PORT` once bound (port 0 picks a free one); SIGTERM/SIGINT drain and exit 0.
"""
import argparse
import asyncio
import os
import signal
import sys
import threading
from concurrent import futures

import grpc

import calculator_impl as impl

HERE = os.path.dirname(os.path.abspath(__file__))


def load_stubs(legacy: bool):
    sys.path.insert(0, os.path.join(HERE, "gen", "legacy" if legacy else "current"))
    import calculator_pb2 as pb
    import calculator_pb2_grpc as pb_grpc
    return pb, pb_grpc


def make_servicer(pb, pb_grpc, legacy: bool):
    def summary(stats):
        return pb.Summary(**stats.summary())

    class LegacyCalculator(pb_grpc.CalculatorServicer):
        def Calculate(self, request, context):
            try:
                return pb.Response(result=impl.calculate(request.num1, request.operator, request.num2))
            except impl.CalcError as e:
                context.abort(e.code, e.message)

    if legacy:
        return LegacyCalculator

    class Calculator(LegacyCalculator):
        def CalculateStream(self, request_iterator, context):
            for request in request_iterator:
                try:
                    yield pb.Response(result=impl.calculate(request.num1, request.operator, request.num2))
                except impl.CalcError as e:
                    yield pb.Response(error=pb.Error(code=e.code.value[0], message=e.message))

        def Summarize(self, request_iterator, context):
            stats = impl.RunningStats()
            try:
                for number in request_iterator:
                    stats.push(number.value)
            except impl.CalcError as e:
                context.abort(e.code, e.message)
            return summary(stats)

        def Factorize(self, request, context):
            try:
                factors = impl.factorize(request.number)
            except impl.CalcError as e:
                context.abort(e.code, e.message)
            for p in factors:
                yield pb.Factor(prime=p)

        def RunningSummary(self, request_iterator, context):
            stats = impl.RunningStats()
            for number in request_iterator:
                try:
                    stats.push(number.value)
                except impl.CalcError as e:
                    context.abort(e.code, e.message)
                yield summary(stats)

    return Calculator


def make_async_servicer(pb, pb_grpc, legacy: bool):
    """The same service as grpc.aio's native form: coroutines and async generators, awaiting
    `context.abort`. (grpc.aio can run the sync servicer in a thread pool, but an abort from
    a sync generator there now and then left a bidirectional call hanging.)"""
    def summary(stats):
        return pb.Summary(**stats.summary())

    class LegacyCalculator(pb_grpc.CalculatorServicer):
        async def Calculate(self, request, context):
            try:
                return pb.Response(result=impl.calculate(request.num1, request.operator, request.num2))
            except impl.CalcError as e:
                await context.abort(e.code, e.message)

    if legacy:
        return LegacyCalculator

    class Calculator(LegacyCalculator):
        async def CalculateStream(self, request_iterator, context):
            async for request in request_iterator:
                try:
                    yield pb.Response(result=impl.calculate(request.num1, request.operator, request.num2))
                except impl.CalcError as e:
                    yield pb.Response(error=pb.Error(code=e.code.value[0], message=e.message))

        async def Summarize(self, request_iterator, context):
            stats = impl.RunningStats()
            try:
                async for number in request_iterator:
                    stats.push(number.value)
            except impl.CalcError as e:
                await context.abort(e.code, e.message)
            return summary(stats)

        async def Factorize(self, request, context):
            try:
                factors = impl.factorize(request.number)
            except impl.CalcError as e:
                await context.abort(e.code, e.message)
            for p in factors:
                yield pb.Factor(prime=p)

        async def RunningSummary(self, request_iterator, context):
            stats = impl.RunningStats()
            async for number in request_iterator:
                try:
                    stats.push(number.value)
                except impl.CalcError as e:
                    await context.abort(e.code, e.message)
                yield summary(stats)

    return Calculator


def announce(host, port):
    print(f"listening on {host}:{port}", flush=True)


def serve_sync(args, servicer, pb_grpc):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_CalculatorServicer_to_server(servicer(), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    announce(args.host, port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=args.grace).wait()


async def serve_async(args, servicer_cls, pb_grpc):
    server = grpc.aio.server()
    pb_grpc.add_CalculatorServicer_to_server(servicer_cls(), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    announce(args.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=args.grace)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one (default 50051)")
    parser.add_argument("--asyncio", action="store_true", help="serve with grpc.aio instead of a thread pool")
    parser.add_argument("--legacy", action="store_true", help="serve only the original contract (Calculate)")
    parser.add_argument("--workers", type=int, default=10, help="thread pool size without --asyncio (default 10)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds calls in flight get on shutdown")
    args = parser.parse_args()
    pb, pb_grpc = load_stubs(args.legacy)
    if args.asyncio:
        servicer = make_async_servicer(pb, pb_grpc, args.legacy)
        asyncio.run(serve_async(args, servicer, pb_grpc))
    else:
        servicer = make_servicer(pb, pb_grpc, args.legacy)
        serve_sync(args, servicer, pb_grpc)


if __name__ == "__main__":
    main()
