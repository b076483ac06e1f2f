// HTTP for the hub client, on Foundation's URLSession (FoundationNetworking, libcurl, on Linux): one request at a
// time, made synchronous for the commands, with the body either kept (small JSON, error pages) or streamed into
// a file as it arrives (so a dropped connection leaves the bytes received so far, to resume from).
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import FlintFormat

struct HTTPResponse {
    var status: Int
    /// Header fields with lowercased names.
    var headers: [String: String]
    /// The URL that answered (after any redirect followed).
    var url: URL
    /// The body, when it was kept rather than streamed (capped at the request's limit).
    var body: Data

    func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Why a request got no complete answer.
enum HTTPTransportError: Error {
    /// No byte for longer than the timeout.
    case timedOut(URL, seconds: Double)
    /// Could not connect, or the connection broke (`bytesReceived` of the body had arrived by then).
    case network(URL, reason: String, bytesReceived: Int64)
    /// The body sink refused the bytes (a disk error); not worth retrying.
    case sink(Error)
}

final class HubHTTP {
    let userAgent = "flint (huggingface_hub-compatible cache)"

    /// One request. With `sink`, the body of a 2xx answer is handed to it chunk by chunk (after `onResponse` saw
    /// the status and headers) instead of being kept. Redirects are followed only when `followRedirects`; an
    /// `Authorization` header is not carried to another host.
    func perform(_ method: String, _ url: URL, headers: [String: String], timeout: Double,
                 followRedirects: Bool, keepBodyUpTo limit: Int = 1 << 20,
                 onResponse: ((HTTPResponse) throws -> Void)? = nil,
                 sink: ((Data) throws -> Void)? = nil) throws -> HTTPResponse {
        // FoundationNetworking counts timeouts in whole seconds (0.5 would become 0: no wait at all).
        let timeout = max(1, timeout.rounded(.up))
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue(userAgent, forHTTPHeaderField: "User-Agent")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }

        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        let transfer = Transfer(originalHost: url.host, followRedirects: followRedirects, limit: limit,
                                onResponse: onResponse, sink: sink)
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: configuration, delegate: transfer, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: request).resume()
        transfer.done.wait()

        if let failure = transfer.sinkError { throw HTTPTransportError.sink(failure) }
        if let error = transfer.error {
            // A redirect we declined ends the task with the 3xx response in hand on some platforms: that is an answer.
            if let response = transfer.response, (300..<400).contains(response.status), !followRedirects {
                return response
            }
            let code = (error as? URLError)?.code
            if code == .timedOut { throw HTTPTransportError.timedOut(url, seconds: timeout) }
            throw HTTPTransportError.network(url, reason: describe(error), bytesReceived: transfer.bodyBytes)
        }
        guard var response = transfer.response else {
            throw HTTPTransportError.network(url, reason: "no HTTP response", bytesReceived: 0)
        }
        response.body = transfer.body
        return response
    }

    private func describe(_ error: Error) -> String {
        let ns = error as NSError
        if let text = ns.userInfo[NSLocalizedDescriptionKey] as? String, !text.isEmpty { return text }
        return ns.localizedDescription
    }
}

private final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let originalHost: String?
    let followRedirects: Bool
    let limit: Int
    let onResponse: ((HTTPResponse) throws -> Void)?
    let sink: ((Data) throws -> Void)?
    let done = DispatchSemaphore(value: 0)

    var response: HTTPResponse?
    var body = Data()
    var bodyBytes: Int64 = 0
    var error: Error?
    var sinkError: Error?
    private var streaming = false

    init(originalHost: String?, followRedirects: Bool, limit: Int,
         onResponse: ((HTTPResponse) throws -> Void)?, sink: ((Data) throws -> Void)?) {
        self.originalHost = originalHost
        self.followRedirects = followRedirects
        self.limit = limit
        self.onResponse = onResponse
        self.sink = sink
    }

    private static func convert(_ r: HTTPURLResponse, fallback: URL?) -> HTTPResponse {
        var headers: [String: String] = [:]
        for (key, value) in r.allHeaderFields {
            if let k = key as? String { headers[k.lowercased()] = "\(value)" }
        }
        return HTTPResponse(status: r.statusCode, headers: headers, url: r.url ?? fallback ?? URL(fileURLWithPath: "/"),
                            body: Data())
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        guard followRedirects else {
            self.response = Transfer.convert(response, fallback: task.originalRequest?.url)
            completionHandler(nil)
            return
        }
        var next = request
        if request.url?.host != originalHost { next.setValue(nil, forHTTPHeaderField: "Authorization") }
        completionHandler(next)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse else { completionHandler(.allow); return }
        let converted = Transfer.convert(http, fallback: dataTask.originalRequest?.url)
        self.response = converted
        streaming = sink != nil && (200..<300).contains(converted.status)
        if streaming, let onResponse {
            do { try onResponse(converted) } catch {
                sinkError = error
                completionHandler(.cancel)
                return
            }
        }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard sinkError == nil else { return }
        bodyBytes += Int64(data.count)
        if streaming, let sink {
            do { try sink(data) } catch {
                sinkError = error
                dataTask.cancel()
            }
        } else if body.count < limit {
            body.append(data.prefix(limit - body.count))
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        self.error = error
        done.signal()
    }
}
