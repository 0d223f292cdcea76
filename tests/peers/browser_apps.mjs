// An instance admin registers an app in Debian's Chromium (never a downloaded browser): the
// apps page, a refused form that keeps what was typed, the secret shown once (a reload and the
// back button do not show it again or make a second app), the app's page, a new secret.
// Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_apps.mjs BASE ADMIN_EMAIL PASSWORD TOTP_CODE
import { journey, shot, signIn, submit, text } from './admin_pages.mjs';

const [base, email, password, code] = process.argv.slice(2);
await journey(async (page) => {
  const out = {};
  await signIn(page, base, email, password, code);
  await submit(page, 'a:has-text("Apps")');
  await shot(page, 'apps-empty');
  // A plain-http redirect URI is refused; what was typed stays.
  await page.fill('#app-slug', 'crm');
  await page.fill('#app-name', 'Acme CRM');
  await page.fill('#app-redirect', 'http://crm.example.com/callback');
  await page.fill('input[name=confirm_password]', password);
  await submit(page, '#register-app');
  out.refused = await text(page, '#page-error');
  out.kept = await page.inputValue('#app-redirect');
  await shot(page, 'apps-refused');
  await page.fill('#app-redirect', 'https://crm.example.com/callback\nhttp://localhost:3000/callback');
  await page.fill('input[name=confirm_password]', password);
  await submit(page, '#register-app');
  out.client_id = await text(page, '#secret-1');
  out.secret_shown = (await text(page, '#secret-2')).length;
  await shot(page, 'app-secret');
  await page.reload();
  out.reload = await text(page, 'h1');
  await page.goBack();
  await page.goBack();
  await page.goto(`${base}/sso/admin/apps`);
  out.rows = await page.locator('#apps tr').count() - 1;
  await shot(page, 'apps-list');
  await submit(page, '#apps a');
  await shot(page, 'app-page');
  await page.fill('form:has(#rotate-secret) input[name=confirm_password]', password);
  await submit(page, '#rotate-secret');
  out.rotated_warning = await text(page, 'p.warning');
  await shot(page, 'app-new-secret');
  return out;
});
