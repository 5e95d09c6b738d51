// The service worker of the web client (served at /sw.js, scope /): shows the pushes chatd
// sends while no page of the site is open, and opens the conversation on a click. A push
// says who wrote and where (docs/protocol.md, Notifications); its text only with
// --push-preview.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let push = {};
  try {
    push = event.data ? event.data.json() : {};
  } catch {
    return;
  }
  const key = push.groupid ? `g:${push.groupid}` : `u:${push.peer}`;
  if (push.kind === "read") {
    // Read on another device: close what this one shows of the conversation.
    event.waitUntil(self.registration.getNotifications({ tag: key })
      .then((shown) => shown.forEach((n) => n.close())));
    return;
  }
  if (push.kind !== "message") return;
  const lines = [push.preview, push.unread > 1 ? `${push.unread} unread messages` : ""];
  event.waitUntil(self.registration.showNotification(
    push.mention ? `${push.title} (mentions you)` : push.title,
    { body: lines.filter(Boolean).join("\n"), tag: key, renotify: true, data: { key } }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const key = event.notification.data?.key;
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const page of pages) {
      await page.focus();
      page.postMessage({ open: key });
      return;
    }
    await self.clients.openWindow(`/#${key}`);
  })());
});
