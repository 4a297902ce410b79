-- wrk script for `just bench`: real bearer tokens rotated across users, and the stateful
-- requests (If-Match versions, rotating refresh cookies) tracked per connection-free queue.
--
--   wrk -t N ... -s benchmarks/wrk.lua -- MODE DIR COOKIE_NAME N
-- MODE: get | post | update | refresh | login | mixed. DIR holds the data files written by
-- benchmarks/bench.py (tab-separated, one request per line):
--   get.tsv      path, token             (list, deep page, 100k user, delta sync)
--   post.tsv     path, token, body       (create)
--   update.tsv   todo id, token, version (PATCH with If-Match; the new version is read back)
--   refresh.tsv  refresh cookie          (each rotation's new cookie is used next)
--   login.tsv    body
-- Each queue entry is in flight at most once, so a version or a refresh token is never used
-- twice concurrently. `done` prints one JSON line that bench.py reads.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local function split(line)
   local fields = {}
   for field in string.gmatch(line, "([^\t]+)") do
      table.insert(fields, field)
   end
   return fields
end

local function load(path, mine)
   local rows = {}
   local file = io.open(path, "r")
   if file == nil then
      return rows
   end
   local index = 0
   for line in file:lines() do
      if mine == nil or index % nthreads == tid then
         table.insert(rows, split(line))
      end
      index = index + 1
   end
   file:close()
   return rows
end

-- A FIFO of free entries.
local function queue(rows)
   local q = {first = 1, last = 0, items = {}}
   for _, row in ipairs(rows) do
      q.last = q.last + 1
      q.items[q.last] = row
   end
   return q
end

local function pop(q)
   if q.first > q.last then
      return nil
   end
   local item = q.items[q.first]
   q.items[q.first] = nil
   q.first = q.first + 1
   return item
end

local function push(q, item)
   q.last = q.last + 1
   q.items[q.last] = item
end

local get_rows, post_rows, login_rows = {}, {}, {}
local get_i, post_i, login_i = 0, 0, 0
local updates, refreshes
local inflight = {}
local schedule = {}
local slot = 0
local cookie_name = "refresh_token"
local cookie_pattern = "refresh_token=([^;]+)"
fallbacks = 0

function init(args)
   mode = args[1]
   local dir = args[2]
   cookie_name = args[3] or cookie_name
   -- A Lua pattern: escape the magic characters of the name ("-" in "__Secure-...").
   cookie_pattern = string.gsub(cookie_name, "([%^%$%(%)%%%.%[%]%*%+%-%?])", "%%%1") .. "=([^;]+)"
   nthreads = tonumber(args[4] or "1")
   get_rows = load(dir .. "/get.tsv")
   post_rows = load(dir .. "/post.tsv")
   login_rows = load(dir .. "/login.tsv")
   updates = queue(load(dir .. "/update.tsv", true))
   refreshes = queue(load(dir .. "/refresh.tsv", true))
   -- Start each thread at its own place in the rotation.
   get_i = tid * 7919
   post_i = tid * 7919
   login_i = tid * 13
   -- mixed: 80 list, 10 update, 7 create, 2 refresh, 1 login in every 100 requests, spread out.
   local counts = {{"get", 80}, {"update", 10}, {"post", 7}, {"refresh", 2}, {"login", 1}}
   for _, entry in ipairs(counts) do
      for k = 0, entry[2] - 1 do
         table.insert(schedule, {(k + 0.5) / entry[2], entry[1]})
      end
   end
   table.sort(schedule, function(a, b) return a[1] < b[1] end)
end

local function auth(token)
   return {Authorization = "Bearer " .. token}
end

local function get_request()
   get_i = get_i + 1
   local row = get_rows[(get_i % #get_rows) + 1]
   return wrk.format("GET", row[1], auth(row[2]))
end

local function post_request()
   post_i = post_i + 1
   local row = post_rows[(post_i % #post_rows) + 1]
   local headers = auth(row[2])
   headers["Content-Type"] = "application/json"
   return wrk.format("POST", row[1], headers, row[3])
end

local function login_request()
   login_i = login_i + 1
   local row = login_rows[(login_i % #login_rows) + 1]
   return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"}, row[1])
end

local function update_request()
   local row = pop(updates)
   if row == nil then
      return nil
   end
   inflight[row[1]] = row
   local headers = auth(row[2])
   headers["Content-Type"] = "application/json"
   headers["If-Match"] = '"' .. row[3] .. '"'
   local body = '{"title":"updated ' .. row[3] .. '"}'
   return wrk.format("PATCH", "/api/v1/todos/" .. row[1], headers, body)
end

local function refresh_request()
   local row = pop(refreshes)
   if row == nil then
      return nil
   end
   return wrk.format("POST", "/api/v1/auth/refresh", {Cookie = cookie_name .. "=" .. row[1]})
end

local makers = {
   get = get_request,
   post = post_request,
   login = login_request,
   update = update_request,
   refresh = refresh_request,
}

function request()
   local kind = mode
   if mode == "mixed" then
      slot = slot % #schedule + 1
      kind = schedule[slot][2]
   end
   local built = makers[kind]()
   if built == nil then
      -- Every queued entry is in flight (should not happen: the queues are larger than the
      -- connections); send a list request rather than reuse a version or a refresh token.
      fallbacks = fallbacks + 1
      if #get_rows == 0 then
         return wrk.format("GET", "/health")
      end
      return get_request()
   end
   return built
end

function response(status, headers, body)
   if mode ~= "update" and mode ~= "refresh" and mode ~= "mixed" then
      return
   end
   if status == 200 and string.sub(body, 1, 6) == '{"id":' then
      local id = string.match(body, '^{"id":"([0-9a-f%-]+)"')
      local row = id and inflight[id]
      if row then
         inflight[id] = nil
         local version = string.match(body, '"version":%s*(%d+)')
         push(updates, {row[1], row[2], version})
      end
      return
   end
   if status == 200 and string.find(body, '"user"', 1, true) == nil then
      for name, value in pairs(headers) do
         if string.lower(name) == "set-cookie" then
            local token = string.match(value, cookie_pattern)
            if token then
               push(refreshes, {token})
            end
         end
      end
   end
end

function done(summary, latency, requests)
   local lost = 0
   for _, thread in ipairs(threads) do
      lost = lost + (thread:get("fallbacks") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f,"fallbacks":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99), latency.max, latency.mean, lost))
end
